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

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ...engine.validate import check_integer
from ...errors import DeconvError
from ..common import called_modules

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
    stride = check_integer(stride, "stride", minimum=1)
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
    from ...engine.features import FeatureExtractor

    if layer is None:
        name = first_conv(model, input_size)
        with FeatureExtractor(model) as dn:
            dn.follow_size(input_size)
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


def sort_order(spectra: FilterSpectra, sort: str) -> np.ndarray:
    """Filter indices in display order: as defined, or by descending RMS, aliasing share or centroid."""
    if sort == "none":
        return np.arange(len(spectra.rms))
    key = {"rms": spectra.rms, "aliasing": spectra.aliasing, "frequency": spectra.centroid}[sort]
    return np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")


