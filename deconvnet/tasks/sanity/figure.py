"""Figures of a sanity check (deconvnet.tasks.sanity.compute): the maps as the model is randomized,
the similarity curves, and the unit and class panels.

The layout of the first follows Adebayo et al., "Sanity checks for saliency maps"
(NeurIPS 2018), Fig. 2: one row per mode, the intact model's map first, then one column
per cascading randomization step, all on one image. Maps are shown as the measures see
them: the sum of |value| over the colour channels, clipped at the 99th percentile.

>>> figure = randomization_figure(picture, result)        # doctest: +SKIP
>>> save_figure_atomic("out/randomization.png", figure)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...render.figures import NotebookFigure, new_figure
from .compute import SanityResult
from .similarity import MEASURE_LABELS, MEASURES

MODE_COLOURS = {"deconvnet": "tab:blue", "guided": "tab:orange", "backprop": "tab:green"}
COMPARISON_LABELS = {
    "other_channel": "another\nchannel",
    "random_seed": "random seed\n(whole layer)",
    "random_class": "a random\nclass",
    "lowest_class": "the lowest\nclass",
}


def _target(result: SanityResult) -> str:
    layer = f"{result.layer} ({result.alias})" if result.alias else result.layer
    if result.target_name:
        return f"{layer}, class {result.target_name!r}"
    channels = set(result.channels)
    what = f"channel {result.channels[0]}" if len(channels) == 1 else "each image's top-1 class"
    return f"{layer}, {what}"


def _title(result: SanityResult, what: str) -> str:
    model = f"{result.model} " if result.model else ""
    return f"{model}{_target(result)}: {what}"


def _spread(values: np.ndarray) -> np.ndarray:
    """The standard deviation over images (axis 0), ignoring empty maps; 0 where none is left."""
    finite = np.isfinite(values)
    count = np.maximum(finite.sum(0), 1)
    filled = np.where(finite, values, 0.0)
    mean = filled.sum(0) / count
    return np.sqrt((np.where(finite, values - mean, 0.0) ** 2).sum(0) / count)


def _show(ax, image: np.ndarray, title: str | None = None, fontsize: float = 8) -> None:
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def randomization_figure(picture: np.ndarray, result: SanityResult) -> NotebookFigure:
    """Rows: modes; columns: the input, the intact model's map, then each cascading step (one image)."""
    columns = ["intact"] + [f"cascading:{name}" for name in result.steps]
    side = 1.25
    figure = new_figure(side * (len(columns) + 1) + 0.6, side * len(result.modes) + 1.0)
    axes = np.atleast_2d(figure.subplots(len(result.modes), len(columns) + 1, squeeze=False))
    for row, mode in enumerate(result.modes):
        _show(axes[row, 0], picture, "input" if row == 0 else None)
        axes[row, 0].set_ylabel(mode, fontsize=10)
        for col, key in enumerate(columns, start=1):
            title = ("intact" if key == "intact" else key.split(":", 1)[1]) if row == 0 else None
            _show(axes[row, col], result.example_maps[mode][key], title, fontsize=7)
    figure.suptitle(_title(result, f"cascading randomization from the top layer down, on image "
                                   f"{Path(result.images[result.example]).name}"), fontsize=10)
    return figure


def curves_figure(result: SanityResult) -> NotebookFigure:
    """Each measure against the randomization depth: mean over images, band of one standard deviation.

    Top row: cascading (step k randomizes the first k steps); bottom: each step alone.
    """
    kinds = [("cascading", result.cascading)] + ([("independent", result.independent)] if result.independent else [])
    figure = new_figure(4.2 * len(MEASURES), 4.0 * len(kinds))
    axes = figure.subplots(len(kinds), len(MEASURES), squeeze=False)
    ticks = ["intact"] + list(result.steps)
    positions = np.arange(len(ticks))
    for row, (kind, table) in enumerate(kinds):
        for col, measure in enumerate(MEASURES):
            ax = axes[row, col]
            for mode in result.modes:
                values = table[mode][measure]  # (images, steps)
                mean = np.concatenate([[1.0], result.mean(values)])
                spread = np.concatenate([[0.0], _spread(values)])
                colour = MODE_COLOURS.get(mode)
                ax.plot(positions, mean, marker="o", markersize=3, label=mode, color=colour)
                ax.fill_between(positions, mean - spread, mean + spread, alpha=0.2, color=colour, linewidth=0)
            ax.axhline(0.0, color="grey", linewidth=0.6)
            ax.set_ylim(-1.05, 1.05)
            ax.set_xticks(positions)
            ax.set_xticklabels(ticks, rotation=90, fontsize=6)
            ax.set_title(f"{MEASURE_LABELS[measure]}, {kind}", fontsize=9)
            if col == 0:
                ax.set_ylabel("similarity to the intact map", fontsize=8)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(_title(result, f"similarity to the intact model's map, mean over {len(result.images)} images "
                                   f"(band: one standard deviation)"), fontsize=10)
    return figure


def selectivity_figure(picture: np.ndarray, result: SanityResult) -> NotebookFigure:
    """Example maps of the target, another channel and a random seed (and, for a classifier,
    the top-1, a random and the lowest class), above bars of each measure's mean per mode."""
    keys = [("intact", "target"), ("other_channel", "another channel"), ("random_seed", "random seed")]
    comparisons = ["other_channel", "random_seed"]
    if result.classes is not None:
        keys += [("top1", "top-1 class"), ("random_class", "random class"), ("lowest_class", "lowest class")]
        comparisons += ["random_class", "lowest_class"]
    columns = len(keys) + 1
    figure = new_figure(max(1.6 * columns, 4.0 * len(MEASURES) * 0.8), 1.6 * len(result.modes) + 3.6)
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.6 * len(result.modes), 3.2])  # type: ignore[misc]
    axes = top.subplots(len(result.modes), columns, squeeze=False)
    for row, mode in enumerate(result.modes):
        _show(axes[row, 0], picture, "input" if row == 0 else None)
        axes[row, 0].set_ylabel(mode, fontsize=10)
        for col, (key, label) in enumerate(keys, start=1):
            _show(axes[row, col], result.example_maps[mode][key], label if row == 0 else None)
    bars = bottom.subplots(1, len(MEASURES), squeeze=False)[0]
    width = 0.8 / len(result.modes)
    for ax, measure in zip(bars, MEASURES):
        for index, mode in enumerate(result.modes):
            tables = [result.classes[mode][c] if c in ("random_class", "lowest_class") and result.classes
                      else result.selectivity[mode][c] for c in comparisons]
            means = [float(result.mean(t[measure])) for t in tables]
            spreads = [float(_spread(t[measure])) for t in tables]
            ax.bar(np.arange(len(comparisons)) + (index - (len(result.modes) - 1) / 2) * width, means, width,
                   yerr=spreads, label=mode, color=MODE_COLOURS.get(mode), capsize=2)
        ax.axhline(0.0, color="grey", linewidth=0.6)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks(np.arange(len(comparisons)))
        ax.set_xticklabels([COMPARISON_LABELS[c] for c in comparisons], fontsize=7)
        ax.set_title(MEASURE_LABELS[measure], fontsize=9)
    bars[0].set_ylabel("similarity to the target's map\n(top-1 class's for the classes)", fontsize=8)
    bars[0].legend(fontsize=7)
    figure.suptitle(_title(result, f"unit selectivity{' and class sensitivity' if result.classes else ''}, "
                                   f"maps of image {Path(result.images[result.example]).name}, bars: mean over "
                                   f"{len(result.images)} images"), fontsize=10)
    return figure
