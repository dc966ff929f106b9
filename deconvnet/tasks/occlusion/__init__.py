"""Occlusion sensitivity (Zeiler & Fergus, ECCV 2014, Sec. 4.2 and Fig. 7).

``compute`` maps a value under a sliding grey square on tensors; ``files`` holds ``occlusion``,
what ``deconv occlusion`` calls (an image file in, the figure written); ``figure`` draws it.
"""

from .compute import DEFAULT_BATCH_SIZE, DEFAULT_SIZE, DEFAULT_STRIDE, OcclusionGrid, describe, mid_grey, occlusion_map
from .files import Occlusion, occlusion

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_SIZE", "DEFAULT_STRIDE", "Occlusion", "OcclusionGrid", "describe", "mid_grey",
           "occlusion", "occlusion_map"]
