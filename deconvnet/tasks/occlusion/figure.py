"""The occlusion figure (the paper's Fig. 7): the input, the image with the most-affected occluder,
and the drop of the measured value over the image (see deconvnet.tasks.occlusion.compute).

>>> figure = occlusion_figure(picture, result, occluded, title="vgg16-hed: conv5_3 channel 155")  # doctest: +SKIP
>>> save_figure_atomic("cat_occ.png", figure)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import TwoSlopeNorm

from ...render.figures import NotebookFigure, new_figure, outline_box
from .compute import OcclusionResult


def occlusion_figure(image: np.ndarray, result: OcclusionResult, occluded: np.ndarray, *,
                     title: str) -> NotebookFigure:
    """Three panels: the input with the most-affected region, the image with that occluder,
    and the drop in the measured value for each occluder position, over the image."""
    drop = result.drop.numpy()
    spread = result.grid.upsample(drop)
    limit = float(np.abs(drop).max()) or 1.0
    figure = new_figure(11.0, 4.2)
    axes = figure.subplots(1, 3)
    value, baseline = result.most_affected_value, result.baseline
    grey = image.mean(axis=2)
    panels = (
        (image, "input; red: most-affected region"),
        (occluded, f"occluded there: {value:.4g} (drop {baseline - value:.4g})"),
        (grey, f"drop, square centred here (baseline {baseline:.4g})"),
    )
    for ax, (picture, panel_title) in zip(axes, panels):
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    heat = axes[2].imshow(spread, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), alpha=0.65,
                          interpolation="nearest")
    colour_bar = figure.colorbar(heat, ax=axes[2], shrink=0.85)
    colour_bar.set_label("baseline - value (red: occluding here lowers it)", fontsize=8)
    for ax in (axes[0], axes[2]):
        outline_box(ax, result.most_affected, linewidth=1.8)
    rows, cols = result.grid.shape
    figure.suptitle(f"{title}\n{result.grid.size}x{result.grid.size} grey occluder, stride {result.grid.stride}, "
                    f"{rows}x{cols} positions", fontsize=11)
    return figure
