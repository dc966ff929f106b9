"""The sheet of a feature visualization (Olah et al., "Feature Visualization", Distill 2017): one
optimized image per channel in a grid, each titled with its layer and channel.

Example:
    >>> import numpy as np
    >>> featurevis_sheet([np.zeros((64, 64, 3), np.uint8)] * 3, ["conv5_3 ch 12", "ch 40", "ch 7"]).shape
    (80, 200, 3)
"""

from __future__ import annotations

from typing import Sequence

from .pictures import UInt8Image, mosaic


def featurevis_sheet(pictures: Sequence[UInt8Image], titles: Sequence[str], *, ncols: int | None = None) -> UInt8Image:
    """``pictures`` (each (H, W, 3) uint8) in a grid of ``ncols`` (default up to 8 in a row), ``titles[i]``
    above ``pictures[i]``."""
    return mosaic(pictures, titles, ncols=ncols or min(len(pictures), 8), pad=4)
