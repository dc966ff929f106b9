"""Turn the engine's tensors into pictures (numpy/PIL) and figures (matplotlib).

- :mod:`deconvnet.render.pictures`: grey-centred projections, crops, grids, channel sheets,
  mosaics as uint8 arrays (H, W, 3); it never imports matplotlib.
- :mod:`deconvnet.render.figures`: the matplotlib figures built from them, and the one way
  the tasks start a figure (``new_figure``) and outline a box (``outline_box``).

The names of both are importable from here and load their module on first use, so
``from deconvnet.render import crop_with_padding`` draws a crop without matplotlib.
``Projection.to_image()`` and ``.show()`` find ``projection_image`` and
``projection_figure`` here (``deconvnet/__init__.py`` registers this package in ``deconvnet.engine.drawing``).

Example:
    >>> import torch
    >>> from deconvnet.render import to_display, crop_with_padding
    >>> picture = to_display(torch.randn(3, 224, 224), percentile=99.5)
    >>> crop_with_padding(picture, (-10, 200, 67, 67), fill=128).shape
    (67, 67, 3)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers and editors
    from .figures import (
        GRID_COLUMNS,
        NotebookFigure,
        channels_figure,
        new_figure,
        outline_box,
        projection_figure,
        show_picture,
        visualize_figure,
    )
    from .pictures import (
        DISPLAY_PERCENTILE,
        GREY,
        channel_sheet,
        crop_with_padding,
        grid,
        image_to_uint8,
        mosaic,
        projection_image,
        to_display,
    )

_PICTURES = {"DISPLAY_PERCENTILE", "GREY", "channel_sheet",
             "crop_with_padding", "grid", "image_to_uint8", "mosaic", "projection_image",
             "to_display"}
_FIGURES = {"GRID_COLUMNS", "NotebookFigure", "channels_figure", "new_figure", "outline_box", "projection_figure",
            "show_picture", "visualize_figure"}

__all__ = [
    "DISPLAY_PERCENTILE", "GREY",
    "GRID_COLUMNS", "NotebookFigure", "channel_sheet", "channels_figure", "crop_with_padding", "grid",
    "image_to_uint8", "mosaic", "new_figure", "outline_box", "projection_figure", "projection_image", "show_picture",
    "to_display", "visualize_figure",
]


def __getattr__(name: str) -> Any:
    # Each name is read from its module on first use: only a figure loads matplotlib.
    if name in _PICTURES:
        return getattr(import_module(".pictures", __name__), name)
    if name in _FIGURES:
        return getattr(import_module(".figures", __name__), name)
    raise AttributeError(f"module 'deconvnet.render' has no attribute {name!r}")
