"""Invariance of features to translation, scale and rotation (Zeiler & Fergus, ECCV 2014, Sec. 4.3, Fig. 5).

One image's curves come from ``compute.invariance_curves``; ``files.invariance`` runs it over image
files for ``deconv invariance`` and writes the curves and the figure that ``figure`` draws.
"""

from .compute import DEFAULT_GRIDS, ImageCurves, invariance_curves, parse_grid, transformed_inputs
from .files import InvarianceReport, invariance, read_image_list

__all__ = ["DEFAULT_GRIDS", "ImageCurves", "InvarianceReport", "invariance", "invariance_curves", "parse_grid",
           "read_image_list", "transformed_inputs"]
