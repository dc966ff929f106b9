"""Occlusion sensitivity (Zeiler & Fergus, ECCV 2014, Sec. 4.2 and Fig. 7), in three modules:

- ``compute``: the map on tensors (``occlusion_map``, ``OcclusionGrid``, ``mid_grey``); writes nothing.
- ``files``: ``occlusion``, what ``deconv occlusion`` calls: an image file in, the figure written.
- ``figure``: the matplotlib figure (loaded only when a figure is drawn).
"""

from .compute import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SIZE,
    DEFAULT_STRIDE,
    OcclusionGrid,
    OcclusionResult,
    describe,
    mid_grey,
    occlusion_map,
)
from .files import Occlusion, occlusion

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_SIZE", "DEFAULT_STRIDE", "Occlusion", "OcclusionGrid", "OcclusionResult",
           "describe", "mid_grey", "occlusion", "occlusion_map"]
