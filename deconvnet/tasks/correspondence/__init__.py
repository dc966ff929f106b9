"""Correspondence of object parts across images (Zeiler & Fergus, ECCV 2014, Sec. 5.1, Table 1).

The measure on model inputs is ``compute.correspondence_deltas``; ``files.correspondence`` runs it
from image files and a part file and writes the JSON, and ``figure`` draws the table.
"""

from .compute import CorrespondenceResult, Spread, correspondence_deltas, delta, format_table, map_box
from .files import Correspondence, correspondence, read_parts

__all__ = ["Correspondence", "CorrespondenceResult", "Spread", "correspondence", "correspondence_deltas", "delta",
           "format_table", "map_box", "read_parts"]
