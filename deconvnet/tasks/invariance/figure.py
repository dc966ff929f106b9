"""The invariance figure (the paper's Fig. 5): per transformation each layer's relative feature distance
and the class probability, one line per image, and a strip of the transformed inputs
(see deconvnet.tasks.invariance.compute).

>>> figure = invariance_figure(curves, title="vgg16: feature distance")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...models import LoadedModel
from ...models.describe import weights_label
from ...render.figures import NotebookFigure, new_figure
from .compute import TRANSFORMS, UNITS, ImageCurves, class_name


def invariance_title(loaded: LoadedModel, curves: list[ImageCurves], published: bool) -> str:
    """The figure's title: the model, its weights and the number of images."""
    return (f"{loaded.name} ({weights_label(loaded, published)}): feature distance to the untransformed image, "
            f"{len(curves)} image(s)")


def invariance_figure(curves: Sequence[ImageCurves], *, title: str = "", categories: Sequence[str] | None = None,
                      thumbnails: int = 5) -> NotebookFigure:
    """The paper's Fig. 5 layout: rows translation, scale, rotation; columns each layer's relative
    distance and the class probability; one line per image; a strip of the first image's
    transformed inputs below."""
    kinds = [k for k in TRANSFORMS if k in curves[0].grids]
    layers = curves[0].layers
    columns = len(layers) + 1
    figure = new_figure(4.0 * columns, 3.0 * len(kinds) + 2.4)
    plots, strip = figure.subfigures(2, 1, height_ratios=[3.0 * len(kinds), 1.6])  # type: ignore[misc]
    axes = np.atleast_2d(plots.subplots(len(kinds), columns, squeeze=False))
    colours = [f"C{i % 10}" for i in range(len(curves))]
    for row, kind in enumerate(kinds):
        for col, layer in enumerate(layers):
            ax = axes[row, col]
            for c, colour in zip(curves, colours):
                ax.plot(c.grids[kind], c.relative[kind][layer], marker=".", markersize=3, color=colour,
                        label=_label(c, categories))
            ax.set_ylabel("||phi(x') - phi(x)|| / ||phi(x)||", fontsize=7)
            if row == 0:
                ax.set_title(f"layer {layer}", fontsize=9)
        ax = axes[row, columns - 1]
        if curves[0].probability is None:
            ax.text(0.5, 0.5, "no class probability:\nthe model's output is not (N, classes)", ha="center",
                    va="center", fontsize=8, transform=ax.transAxes)
        else:
            for c, colour in zip(curves, colours):
                if c.probability is not None:
                    ax.plot(c.grids[kind], c.probability[kind], marker=".", markersize=3, color=colour)
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("P(true class)", fontsize=7)
        if row == 0:
            ax.set_title("probability of the class", fontsize=9)
        for ax in axes[row]:
            ax.set_xlabel(f"{kind}: {UNITS[kind]}", fontsize=7)
            ax.tick_params(labelsize=7)
    plots.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    first = curves[0]
    strip_axes = strip.subplots(1, thumbnails * len(kinds))
    for k, kind in enumerate(kinds):
        values = first.grids[kind]
        picks = np.unique(np.linspace(0, len(values) - 1, thumbnails).round().astype(int))
        for slot in range(thumbnails):
            ax = strip_axes[k * thumbnails + slot]
            ax.axis("off")
            if slot < len(picks):
                ax.imshow(first.thumbnails[kind][picks[slot]])
                ax.set_title(f"{kind[:5]}. {values[picks[slot]]:g}", fontsize=7)
    strip.suptitle(f"the inputs of {first.image} (mid-grey: outside the picture)", fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def _label(c: ImageCurves, categories: Sequence[str] | None) -> str:
    name = class_name(c.target_class, categories)
    if c.baseline_probability is None:
        return c.image
    return f"{c.image}: P({name or c.target_class}) = {c.baseline_probability:.2f}"
