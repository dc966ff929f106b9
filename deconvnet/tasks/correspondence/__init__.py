"""Correspondence of object parts across images (Zeiler & Fergus, ECCV 2014, Sec. 5.1, Table 1), in three modules:

- ``compute``: Delta per part and layer on model inputs (``correspondence_deltas``, ``map_box``); writes nothing.
- ``files``: ``correspondence``, what ``deconv correspondence`` calls: images and a part file in, JSON and figure out.
- ``figure``: the matplotlib figure (loaded only when a figure is drawn).
"""

from .compute import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_REPEATS,
    DEFAULT_SEED,
    CorrespondenceResult,
    Spread,
    correspondence_deltas,
    delta,
    format_table,
    map_box,
    pairwise_hamming,
)
from .files import Correspondence, correspondence, read_parts

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_REPEATS", "DEFAULT_SEED", "Correspondence", "CorrespondenceResult", "Spread",
           "correspondence", "correspondence_deltas", "delta", "format_table", "map_box", "pairwise_hamming",
           "read_parts"]
