"""First-layer filters and aliasing (Zeiler & Fergus, ECCV 2014, Sec. 4.1 and Fig. 6).

The paper found AlexNet's first layer (11x11 filters, stride 4) full of "dead" filters and
of high-frequency filters whose stride-4 sampling aliases, and switched to 7x7 filters at
stride 2. This module turns that argument into numbers for any model's first convolution:

* per filter: its RMS, the share of its energy in low / mid / high spatial frequencies,
  and its **aliasing share**, the fraction of its energy at frequencies that sampling at
  the layer's stride folds back;
* per layer: the median aliasing share and the dead filters.

The spectrum of a filter is the 2-D DFT of the kernel zero-padded to ``size x size``
(default 64), so it samples the kernel's continuous spectrum finely; the energy of a
frequency is ``|F|^2`` summed over the input channels. Frequencies are in cycles per pixel
(-0.5 .. 0.5 on each axis). The bands are radial: low ``r < 1/8``, mid ``1/8 < r < 1/4``,
high ``r > 1/4`` with ``r = sqrt(fx^2 + fy^2)``. Sampling every ``s``-th pixel on both axes
keeps the square ``|fx|, |fy| < 1/(2s)`` (the Nyquist frequency of the stride) and folds
everything outside it: that energy is the aliasing share (0 at stride 1). A DFT sample
exactly on an edge counts half on each side.

>>> import torch
>>> bank = torch.zeros(2, 1, 4, 4)
>>> bank[0] = 1.0                                                  # constant: all energy near 0
>>> bank[1] = torch.tensor([[1.0, -1.0] * 2, [-1.0, 1.0] * 2] * 2)  # checkerboard at 0.5 cycles/pixel
>>> spectra = filter_spectra(bank, stride=2, size=4)
>>> spectra.aliasing.tolist(), spectra.bands[:, 2].tolist()
([0.0, 1.0], [0.0, 1.0])
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
from torch import Tensor, nn
from tqdm import tqdm

from ..errors import DeconvError
from ..fileio import check_figure_path, save_figure_atomic, write_json_atomic, write_text_atomic
from ..models import DEFAULT_MODEL, LoadedModel, load
from .modules import called_modules

BAND_EDGES = (1 / 8, 1 / 4)  # cycles per pixel: low | mid | high
BAND_NAMES = ("low", "mid", "high")
DEFAULT_DFT_SIZE = 64
DEAD_FRACTION = 0.1  # a filter whose RMS is below this fraction of the layer's median RMS is dead
SORTS = ("none", "rms", "aliasing", "frequency")


@dataclass
class FilterSpectra:
    """The spectral numbers of a filter bank; arrays have one row per filter.

    Shares are NaN for an all-zero filter (it has no energy to share).
    """

    rms: np.ndarray  # (F,) root mean square of the weights
    bands: np.ndarray  # (F, 3) energy shares: low, mid, high
    aliasing: np.ndarray  # (F,) energy share outside the stride's Nyquist square
    centroid: np.ndarray  # (F,) energy-weighted mean radial frequency, cycles per pixel
    radial_frequency: np.ndarray  # (B,) bin centres, cycles per pixel
    radial_power: np.ndarray  # (F, B) ring-averaged power relative to a white filter's (1.0)
    stride: int
    size: int  # the DFT's side

    @property
    def nyquist(self) -> float:
        """The Nyquist frequency of the stride, 1/(2*stride) cycles per pixel."""
        return 1.0 / (2 * self.stride)


def filter_spectra(weight: Tensor | np.ndarray, stride: int, *, size: int | None = None) -> FilterSpectra:
    """Energy shares per band, aliasing share and radial spectrum of every filter in ``weight``.

    ``weight`` is a convolution's weight, (F, C, kh, kw); ``stride`` the sampling step the
    aliasing share refers to; ``size`` the side the kernel is zero-padded to before the DFT
    (default: 64, or the kernel's side if larger).

    >>> import torch
    >>> s = filter_spectra(torch.ones(1, 3, 5, 5), stride=1)
    >>> round(float(s.bands[0, 0]), 3), float(s.aliasing[0])
    (0.673, 0.0)
    """
    w = torch.as_tensor(np.asarray(weight) if not isinstance(weight, Tensor) else weight.detach())
    w = w.to(torch.float64).cpu()
    if w.dim() != 4:
        raise DeconvError(f"expected a convolution weight of shape (filters, channels, kh, kw), "
                          f"received shape {tuple(w.shape)}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise DeconvError(f"stride must be a positive integer, received {stride!r}")
    if not torch.isfinite(w).all():
        raise DeconvError("the filter bank contains NaN or infinite weights")
    side = max(w.shape[-2:])
    size = max(DEFAULT_DFT_SIZE, side) if size is None else int(size)
    if size < side:
        raise DeconvError(f"the DFT size ({size}) must be at least the kernel's side ({side})")
    spectrum = torch.fft.fft2(w, s=(size, size))  # (F, C, size, size), zero-padded
    power = (spectrum.abs() ** 2).sum(1).numpy()  # (F, size, size), summed over input channels
    total = power.sum(axis=(1, 2))  # (F,)
    freq = np.fft.fftfreq(size)  # cycles per pixel, -0.5 .. 0.5
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.hypot(fx, fy)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = power / total[:, None, None]  # (F, size, size); NaN for a zero filter
    below = [_below(radius, edge) for edge in BAND_EDGES]
    masks = (below[0], below[1] - below[0], 1.0 - below[1])
    bands = np.stack([(share * m).sum(axis=(1, 2)) for m in masks], axis=1)
    nyquist = 1.0 / (2 * int(stride))
    outside = 1.0 - _below(np.abs(fx), nyquist) * _below(np.abs(fy), nyquist)
    aliasing = (share * outside).sum(axis=(1, 2)) if stride > 1 else np.zeros(len(share))
    centroid = (share * radius).sum(axis=(1, 2))
    bins = np.minimum((radius * size).round().astype(int), int(np.ceil(size / np.sqrt(2))))
    counts = np.bincount(bins.ravel())
    nonempty = counts > 0
    ring_sum = np.stack([np.bincount(bins.ravel(), weights=s.ravel(), minlength=len(counts)) for s in share])
    radial_power = ring_sum[:, nonempty] / counts[nonempty] * size * size  # white filter: 1.0 everywhere
    for array in (bands, aliasing, centroid, radial_power):
        array[total == 0] = np.nan
    rms = np.sqrt((w ** 2).mean(dim=(1, 2, 3)).numpy())
    return FilterSpectra(rms, bands, aliasing, centroid, np.arange(len(counts))[nonempty] / size, radial_power,
                         int(stride), size)


def _below(value: np.ndarray, edge: float) -> np.ndarray:
    """1 below ``edge``, 0 above, 1/2 on it: each DFT sample stands for a cell of width 1/size
    centred on it, and the edge cuts a sample on it in half (so shares converge to the
    continuous spectrum's as the DFT grows)."""
    return np.where(np.isclose(value, edge, rtol=0, atol=1e-12), 0.5, (value < edge).astype(float))


def dead_by_rms(rms: np.ndarray, fraction: float = DEAD_FRACTION) -> np.ndarray:
    """Filters whose RMS is below ``fraction`` of the bank's median RMS.

    >>> dead_by_rms(np.array([1.0, 1.2, 0.05, 0.9])).tolist()
    [False, False, True, False]
    """
    if not 0 < fraction < 1:
        raise DeconvError(f"the dead-filter fraction must be between 0 and 1 (exclusive), received {fraction}")
    return np.asarray(rms) < fraction * float(np.median(rms))


# ------------------------------------------------------------------ the model's layer


def first_conv(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> str:
    """The module name of the first Conv2d that a forward pass runs (not the first one defined).

    >>> first_conv(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()))
    '0'
    """
    called = called_modules(model, input_size, lambda module: isinstance(module, nn.Conv2d))
    if not called:
        raise DeconvError(f"{type(model).__name__} has no Conv2d layer: nothing to analyse")
    return called[0][0]


def conv_layer(model: nn.Module, layer: str | None, input_size: tuple[int, int]) -> tuple[str, str | None, nn.Conv2d]:
    """(module name, alias, module) of ``layer`` (a name or alias; None: the first convolution)."""
    from ..engine.features import FeatureExtractor

    if layer is None:
        name = first_conv(model, input_size)
        with FeatureExtractor(model) as dn:
            alias = dn.layer(name).alias
        conv = model.get_submodule(name)
        assert isinstance(conv, nn.Conv2d)
        return name, alias, conv
    with FeatureExtractor(model) as dn:
        found = dn.layer(layer)
    if not isinstance(found.module, nn.Conv2d):
        raise DeconvError(f"layer {layer} ({found.name}) is a {found.kind}, not a Conv2d: give a convolution "
                          f"(e.g. the first one, {first_conv(model, input_size)})")
    return found.name, found.alias, found.module


def never_active(model: nn.Module, layer: str, inputs, *, progress: bool = True) -> tuple[np.ndarray, int]:
    """Each filter's largest output (bias included) over a stream of input batches, and the image count.

    A filter whose largest output is <= 0 never passes a ReLU on these images.
    ``inputs`` yields model-ready batches (N, 3, H, W).
    """
    module = model.get_submodule(layer.partition(":")[0])  # "name:2" (a second use) reads the module
    largest: Tensor | None = None
    seen = 0

    def record(_module, _inputs, output: Tensor) -> None:
        nonlocal largest
        peak = output.detach().amax(dim=(0, 2, 3)).double()  # (F,)
        largest = peak if largest is None else torch.maximum(largest, peak)

    handle = module.register_forward_hook(record)
    try:
        with torch.inference_mode(), tqdm(desc="activity", unit="image", disable=not progress, leave=False) as bar:
            for batch in inputs:
                model(batch)
                seen += batch.shape[0]
                bar.update(batch.shape[0])
    finally:
        handle.remove()
    if largest is None:
        raise DeconvError("no images to measure the filters' activity on")
    return largest.numpy(), seen


# ------------------------------------------------------------------ the command as a function


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
    from ..dataset.images import open_image

    figure_path = check_figure_path(output)
    if sort not in SORTS:
        raise DeconvError(f"unknown sort {sort!r}: expected one of {', '.join(SORTS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DeconvError(f"batch size must be a positive integer, received {batch_size!r}")
    if not 0 < dead_fraction < 1:
        raise DeconvError(f"the dead-filter fraction must be between 0 and 1 (exclusive), received {dead_fraction}")
    if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1):
        raise DeconvError(f"stride must be a positive integer, received {stride!r}")
    paths = [Path(p) for p in images]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
    loaded = load(model, weights=weights) if isinstance(model, str) else model
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
    figure = filters_figure(conv.weight.detach(), spectra, order, dead_rms if peak is None else dead_rms | (peak <= 0),
                            bgr=loaded.transform.bgr and conv.in_channels == 3,
                            title=_title(summary))
    json_path = figure_path.with_suffix(".json")
    csv_path = figure_path.with_name(figure_path.stem + "_spectrum.csv")
    record = {**summary, "filters": _per_filter(spectra, dead_rms, peak)}
    write_json_atomic(json_path, record)
    write_text_atomic(csv_path, spectrum_csv(spectra))
    save_figure_atomic(figure_path, figure)
    return FiltersReport(figure_path, json_path, csv_path, summary)


def sort_order(spectra: FilterSpectra, sort: str) -> np.ndarray:
    """Filter indices in display order: as defined, or by descending RMS, aliasing share or centroid."""
    if sort == "none":
        return np.arange(len(spectra.rms))
    key = {"rms": spectra.rms, "aliasing": spectra.aliasing, "frequency": spectra.centroid}[sort]
    return np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")


def weights_label(loaded: LoadedModel, published: bool) -> str:
    """'published weights', 'random weights' or 'weights <file>', for a figure's title."""
    if loaded.weights == "random":
        return "random weights"
    if published or loaded.weights == "shipped" or loaded.weights.startswith("torchvision:"):
        return "published weights"
    return f"weights {Path(loaded.weights).name}"


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


def _title(summary: dict) -> str:
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


# ------------------------------------------------------------------ figure


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
                   bgr: bool = False, title: str = ""):
    """The paper's Fig. 6 as numbers: the filter grid, the mean radial spectrum with the stride's
    Nyquist frequency, and the aliasing share of every filter (in grid order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    zoom = max(2, 48 // max(weight.shape[-2:]))
    gap = 2
    grid = filter_grid(weight, order, bgr=bgr, zoom=zoom, gap=gap)
    figure = Figure(figsize=(13.0, 6.2), layout="constrained")
    FigureCanvasAgg(figure)
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
            ax.add_patch(Rectangle((gap + c * (cell_w + gap) - 1.5, gap + r * (cell_h + gap) - 1.5), cell_w + 2,
                                   cell_h + 2, fill=False, edgecolor="red", linewidth=1.5))
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
