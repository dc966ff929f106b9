"""The filters figure (the paper's Fig. 6 as numbers): the filter grid, the mean radial spectrum with
the stride's Nyquist frequency, and every filter's aliasing share (see deconvnet.tasks.filters.compute).

>>> figure = filters_figure(weight, spectra, order, dead, title=filters_title(summary))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ...render.figures import NotebookFigure, new_figure, outline_box
from .compute import BAND_EDGES, FilterSpectra


def filters_title(summary: dict) -> str:
    """The figure's title from the summary ``filters`` writes to its JSON."""
    layer = f"{summary['layer']} ({summary['alias']})" if summary["alias"] else summary["layer"]
    kh, kw = summary["kernel"]
    weights = summary["weights_label"]
    stride = f"stride {summary['stride']}" + ("" if summary["stride"] == summary["layer_stride"]
                                              else f" (the layer's own: {summary['layer_stride']})")
    median = summary["median_aliasing"]
    dead = len(summary["dead_by_rms"])
    never = summary["never_active"]
    activity = "" if never is None else f"; {len(never)} never active over {summary['images']} images"
    return (f"{summary['model']} ({weights}) {layer}: {summary['filter_count']} filters {kh}x{kw}, {stride}\n"
            f"median aliasing share {median:.3f}; {dead} dead (RMS < {summary['dead_fraction']:g} x median)"
            f"{activity}")


def filter_grid(weight: Tensor, order: Sequence[int] | np.ndarray, *, bgr: bool = False, zoom: int = 8,
                gap: int = 2) -> np.ndarray:
    """The filters as one RGB picture (H, W, 3) in 0..1, each scaled to its own min..max.

    Three input channels show as colour (flipped to RGB when ``bgr``); any other count as
    the grey mean over channels. The gaps are white.
    """
    w = weight.detach().double().cpu()
    w = w.flip(1) if bgr else w
    if w.shape[1] != 3:
        w = w.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    count, _, kh, kw = w.shape
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    cell_h, cell_w = kh * zoom, kw * zoom
    grid = np.ones((rows * (cell_h + gap) + gap, columns * (cell_w + gap) + gap, 3))
    for slot, index in enumerate(order):
        f = w[index]
        low, high = float(f.min()), float(f.max())
        picture = ((f - low) / (high - low) if high > low else torch.full_like(f, 0.5)).permute(1, 2, 0).numpy()
        picture = picture.repeat(zoom, axis=0).repeat(zoom, axis=1)
        r, c = divmod(slot, columns)
        top, left = gap + r * (cell_h + gap), gap + c * (cell_w + gap)
        grid[top : top + cell_h, left : left + cell_w] = picture
    return grid


def filters_figure(weight: Tensor, spectra: FilterSpectra, order: np.ndarray, dead: np.ndarray, *,
                   bgr: bool = False, title: str = "") -> NotebookFigure:
    """The paper's Fig. 6 as numbers: the filter grid, the mean radial spectrum with the stride's
    Nyquist frequency, and the aliasing share of every filter (in grid order)."""
    zoom = max(2, 48 // max(weight.shape[-2:]))
    gap = 2
    grid = filter_grid(weight, order, bgr=bgr, zoom=zoom, gap=gap)
    figure = new_figure(13.0, 6.2)
    grid_ax, right = figure.subfigures(1, 2, width_ratios=[1.0, 1.15])  # type: ignore[misc]
    ax = grid_ax.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    columns = int(np.ceil(np.sqrt(len(order))))
    cell_h, cell_w = weight.shape[-2] * zoom, weight.shape[-1] * zoom
    for slot, index in enumerate(order):
        if dead[index]:
            r, c = divmod(slot, columns)
            outline_box(ax, (gap + r * (cell_h + gap), gap + c * (cell_w + gap), cell_h, cell_w), margin=1)
    colour = "RGB" if weight.shape[1] == 3 else "grey: mean over input channels"
    ax.set_title(f"filters ({colour}); each scaled to its own min..max; red frame: dead", fontsize=9)
    spectrum_ax, bar_ax = right.subplots(2, 1)
    mean = np.nanmean(spectra.radial_power, axis=0)
    low_q, high_q = np.nanpercentile(spectra.radial_power, [25, 75], axis=0)
    f = spectra.radial_frequency
    spectrum_ax.fill_between(f, low_q, high_q, color="tab:blue", alpha=0.2, label="filters' 25-75%")
    spectrum_ax.plot(f, mean, color="tab:blue", label="mean over filters")
    spectrum_ax.axvline(spectra.nyquist, color="red", linestyle="--",
                        label=f"Nyquist of stride {spectra.stride}: {spectra.nyquist:g} cycles/px")
    spectrum_ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":", label="white filter")
    for edge in BAND_EDGES:
        spectrum_ax.axvline(edge, color="grey", linewidth=0.6)
    spectrum_ax.set_xlim(0, f.max())
    spectrum_ax.set_xlabel("radial frequency (cycles per pixel); grey lines: low | mid | high bands", fontsize=8)
    spectrum_ax.set_ylabel("power / white filter's", fontsize=8)
    spectrum_ax.set_title("mean radial spectrum (ring-averaged |DFT|^2, each filter normalized)", fontsize=9)
    spectrum_ax.legend(fontsize=7, loc="upper right")
    shares = spectra.aliasing[order]
    colours = ["red" if dead[i] else "tab:orange" for i in order]
    bar_ax.bar(np.arange(len(order)), np.nan_to_num(shares), width=1.0, color=colours)
    median = float(np.nanmedian(spectra.aliasing))
    bar_ax.axhline(median, color="black", linewidth=0.8, label=f"median {median:.3f}")
    bar_ax.set_xlim(-0.5, len(order) - 0.5)
    bar_ax.set_ylim(0, 1)
    bar_ax.set_xlabel("filter (grid order; red: dead)", fontsize=8)
    bar_ax.set_ylabel("aliasing share", fontsize=8)
    bar_ax.set_title(f"energy share above the Nyquist frequency of stride {spectra.stride} "
                     f"(outside |fx|, |fy| <= {spectra.nyquist:g})", fontsize=9)
    bar_ax.legend(fontsize=7, loc="upper right")
    figure.suptitle(title, fontsize=10)
    return figure
