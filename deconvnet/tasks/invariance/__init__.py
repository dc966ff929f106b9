"""Invariance of features to translation, scale and rotation (Zeiler & Fergus, ECCV 2014, Sec. 4.3, Fig. 5),
in three modules:

- ``compute``: the transformed inputs and the distance curves of one image (``invariance_curves``); writes nothing.
- ``files``: ``invariance``, what ``deconv invariance`` calls: image files in, the figure, a JSON and a CSV written.
- ``figure``: the matplotlib figure (loaded only when a figure is drawn).
"""

from .compute import (
    DEFAULT_GRIDS,
    TRANSFORMS,
    ImageCurves,
    check_grid,
    default_layers,
    invariance_curves,
    model_picture,
    normalize,
    parse_grid,
    transformed_inputs,
)
from .files import InvarianceReport, curves_csv, invariance, read_image_list

__all__ = ["DEFAULT_GRIDS", "TRANSFORMS", "ImageCurves", "InvarianceReport", "check_grid", "curves_csv",
           "default_layers", "invariance", "invariance_curves", "model_picture", "normalize", "parse_grid",
           "read_image_list", "transformed_inputs"]
