"""``deconv filters`` as a function: a model's first convolution in, the figure, a JSON and a CSV out.

The numbers come from ``deconvnet.tasks.filters.compute``, the figure from
``deconvnet.tasks.filters.figure``; this module reads the images and writes the files.

>>> report = filters("filters.png", model="alexnet", weights="random")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...engine.validate import check_integer
from ...errors import DeconvError
from ...fileio import check_figure_path, save_figure_atomic, write_json_atomic, write_text_atomic
from ...models import DEFAULT_MODEL, LoadedModel, resolve_model
from ...models.describe import weights_label
from .compute import (
    BAND_EDGES,
    BAND_NAMES,
    DEAD_FRACTION,
    SORTS,
    FilterSpectra,
    conv_layer,
    dead_by_rms,
    filter_spectra,
    never_active,
    sort_order,
)


@dataclass
class FiltersReport:
    """What ``filters`` wrote and the numbers behind it."""

    figure: Path
    json: Path
    csv: Path
    summary: dict


def filters(
    output: str | os.PathLike,
    images: Sequence[str | os.PathLike] = (),
    *,
    model: str | LoadedModel = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    layer: str | None = None,
    stride: int | None = None,
    sort: str = "none",
    dead_fraction: float = DEAD_FRACTION,
    size: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> FiltersReport:
    """Analyse a model's first convolution (or ``layer``) and write the figure, a JSON and a CSV.

    ``output`` is the figure; the JSON (all numbers, per filter and for the layer) and the
    CSV (the mean radial spectrum) are written beside it with the same stem
    (``filters.png`` -> ``filters.json``, ``filters_spectrum.csv``). ``stride`` overrides
    the layer's own stride (to ask what the bank would alias at another stride).
    ``images``, when given, also finds the filters that never activate on them.

    >>> report = filters("filters.png", model="alexnet", weights="random")  # doctest: +SKIP
    >>> report.summary["median_aliasing"]                                   # doctest: +SKIP
    0.93
    """
    from ...dataset.images import open_image

    figure_path = check_figure_path(output)
    if sort not in SORTS:
        raise DeconvError(f"unknown sort {sort!r}: expected one of {', '.join(SORTS)}")
    batch_size = check_integer(batch_size, "batch size", minimum=1)
    if not 0 < dead_fraction < 1:
        raise DeconvError(f"the dead-filter fraction must be between 0 and 1 (exclusive), received {dead_fraction}")
    if stride is not None:
        stride = check_integer(stride, "stride", minimum=1)
    paths = [Path(p) for p in images]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
    loaded = resolve_model(model, weights)
    name, alias, conv = conv_layer(loaded.model, layer, loaded.transform.input_size)
    own_stride = conv.stride[0]
    if conv.stride[0] != conv.stride[1] and stride is None:
        raise DeconvError(f"layer {name} has unequal strides {conv.stride}: give the stride to analyse with --stride")
    stride = own_stride if stride is None else stride
    spectra = filter_spectra(conv.weight, stride, size=size)
    dead_rms = dead_by_rms(spectra.rms, dead_fraction)
    peak = None
    count = 0
    if paths:
        def batches():
            for start in range(0, len(paths), batch_size):
                yield torch.stack([loaded.transform(open_image(p)) for p in paths[start : start + batch_size]])

        peak, count = never_active(loaded.model, name, batches(), progress=progress)
    order = sort_order(spectra, sort)
    published = isinstance(model, str) and weights is None
    summary = _summary(loaded, name, alias, conv, spectra, dead_rms, dead_fraction, peak, count, own_stride,
                       published)
    from .figure import filters_figure, filters_title  # matplotlib only once there is a figure to draw

    figure = filters_figure(conv.weight.detach(), spectra, order, dead_rms if peak is None else dead_rms | (peak <= 0),
                            bgr=loaded.transform.bgr and conv.in_channels == 3,
                            title=filters_title(summary))
    json_path = figure_path.with_suffix(".json")
    csv_path = figure_path.with_name(figure_path.stem + "_spectrum.csv")
    record = {**summary, "filters": _per_filter(spectra, dead_rms, peak)}
    write_json_atomic(json_path, record)
    write_text_atomic(csv_path, spectrum_csv(spectra))
    save_figure_atomic(figure_path, figure)
    return FiltersReport(figure_path, json_path, csv_path, summary)


def _summary(loaded: LoadedModel, name: str, alias: str | None, conv: nn.Conv2d, spectra: FilterSpectra,
             dead_rms: np.ndarray, dead_fraction: float, peak: np.ndarray | None, images: int,
             own_stride: int, published: bool) -> dict:
    summary = {
        "model": loaded.name, "weights": loaded.weights, "weights_label": weights_label(loaded, published),
        "layer": name, "alias": alias,
        "filter_count": int(conv.out_channels), "in_channels": int(conv.in_channels),
        "kernel": list(conv.kernel_size), "layer_stride": int(own_stride), "stride": spectra.stride,
        "nyquist": spectra.nyquist, "dft_size": spectra.size,
        "band_edges": list(BAND_EDGES), "median_aliasing": _number(np.nanmedian(spectra.aliasing)),
        "mean_aliasing": _number(np.nanmean(spectra.aliasing)),
        "mean_bands": dict(zip(BAND_NAMES, (_number(v) for v in np.nanmean(spectra.bands, axis=0)))),
        "dead_fraction": dead_fraction, "median_rms": float(np.median(spectra.rms)),
        "dead_by_rms": [int(i) for i in np.flatnonzero(dead_rms)],
        "images": images,
        "never_active": None if peak is None else [int(i) for i in np.flatnonzero(peak <= 0)],
    }
    return summary


def _number(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def _per_filter(spectra: FilterSpectra, dead_rms: np.ndarray, peak: np.ndarray | None) -> list[dict]:
    rows = []
    for i in range(len(spectra.rms)):
        row = {"index": i, "rms": float(spectra.rms[i]),
               **{name: _number(spectra.bands[i, b]) for b, name in enumerate(BAND_NAMES)},
               "aliasing": _number(spectra.aliasing[i]), "centroid": _number(spectra.centroid[i]),
               "dead_by_rms": bool(dead_rms[i])}
        if peak is not None:
            row["max_activation"] = float(peak[i])
        rows.append(row)
    return rows


def spectrum_csv(spectra: FilterSpectra) -> str:
    """The mean radial spectrum as CSV: frequency, mean power relative to white, and its spread."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frequency_cycles_per_pixel", "mean_relative_power", "std_relative_power", "above_nyquist"])
    mean = np.nanmean(spectra.radial_power, axis=0)
    std = np.nanstd(spectra.radial_power, axis=0)
    for f, m, s in zip(spectra.radial_frequency, mean, std):
        writer.writerow([f"{f:.6g}", f"{m:.6g}", f"{s:.6g}", int(f > spectra.nyquist)])
    return buffer.getvalue()
