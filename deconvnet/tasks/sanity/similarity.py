"""How alike two pixel-space maps are, measured as the sanity-check literature does.

Adebayo et al., "Sanity checks for saliency maps" (NeurIPS 2018), compare saliency maps
with the Spearman rank correlation of their absolute values and of their signed values,
the structural similarity index (SSIM) and the Pearson correlation of their histograms
of oriented gradients (HOG). A map (C, H, W) is first reduced to 2-D:

* absolute: the sum of |value| over the colour channels, clipped at its 99th percentile
  and divided by it, so it lies in [0, 1];
* signed: the sum over the colour channels, |.| clipped at the 99th percentile of the
  absolute values and divided by it, so it lies in [-1, 1].

SSIM and HOG are computed on the absolute maps. The measures use scipy and scikit-image,
an optional extra: ``pip install "deconvnet[analysis]"``.

>>> import numpy as np
>>> a = np.arange(12.0).reshape(1, 3, 4)
>>> scores = compare(reduce_map(a), reduce_map(a))
>>> [round(scores[name], 6) for name in MEASURES]
[1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import DeconvError

MEASURES = ("spearman_abs", "spearman_signed", "ssim", "hog_pearson")
MEASURE_LABELS = {
    "spearman_abs": "rank correlation (absolute)",
    "spearman_signed": "rank correlation (signed)",
    "ssim": "SSIM",
    "hog_pearson": "HOG correlation",
}
CLIP_PERCENTILE = 99.0
HOG_CELL = 8  # pixels per HOG cell, scikit-image's default; 3x3 cells per block


def require_analysis() -> tuple[Any, Any, Any]:
    """scipy.stats, skimage.metrics and skimage.feature, or a DeconvError saying how to install them."""
    try:
        import scipy.stats
        import skimage.feature
        import skimage.metrics
    except ImportError as error:
        missing = error.name or "scipy or scikit-image"
        raise DeconvError(
            f"the sanity checks measure similarity with scipy and scikit-image, and {missing} is not installed: "
            f'pip install "deconvnet[analysis]"'
        ) from error
    return scipy.stats, skimage.metrics, skimage.feature


@dataclass
class ReducedMap:
    """A map reduced to 2-D both ways; the HOG descriptor is computed once, when first needed."""

    absolute: np.ndarray  # (H, W) in [0, 1]
    signed: np.ndarray  # (H, W) in [-1, 1]
    _hog: np.ndarray | None = field(default=None, repr=False)

    def hog(self) -> np.ndarray:
        if self._hog is None:
            _, _, feature = require_analysis()
            cells = max(1, min(HOG_CELL, min(self.absolute.shape) // 3))
            self._hog = feature.hog(self.absolute, pixels_per_cell=(cells, cells), cells_per_block=(3, 3),
                                    feature_vector=True)
        return self._hog


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _scaled(values: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    limit = float(np.percentile(magnitude, CLIP_PERCENTILE))
    if limit <= 0:  # a sparse map: fall back to the maximum so the few non-zero pixels survive
        limit = float(magnitude.max())
    if limit <= 0:
        return np.zeros_like(values)
    return np.clip(values, -limit, limit) / limit


def reduce_map(projection: Any) -> ReducedMap:
    """Reduce a map (C, H, W) or (H, W) to the absolute and signed 2-D maps compared here.

    >>> m = reduce_map(np.array([[[1.0, -2.0]], [[-3.0, 1.0]]]))   # two channels, 1 x 2 pixels
    >>> np.round(m.absolute, 3).tolist(), np.round(m.signed, 3).tolist()   # |.|: 4, 3 clipped at 3.99
    ([[1.0, 0.752]], [[-1.0, -0.503]])
    """
    values = _as_numpy(projection)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise DeconvError(f"expected a map of shape (C, H, W) or (H, W), received shape {values.shape}")
    if not np.isfinite(values).all():
        raise DeconvError("the map holds NaN or infinite values; check the projection that produced it")
    absolute = np.abs(values).sum(axis=0)  # (H, W)
    signed = values.sum(axis=0)  # (H, W)
    return ReducedMap(_scaled(absolute, absolute), _scaled(signed, np.abs(signed)))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    stats, _, _ = require_analysis()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant map has no ranking (e.g. an all-zero projection)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def compare(reference: ReducedMap, other: ReducedMap) -> dict[str, float]:
    """The four similarities of two reduced maps (NaN where a map is constant, e.g. all zero).

    >>> m = reduce_map(np.random.default_rng(0).normal(size=(3, 32, 32)))
    >>> negated = ReducedMap(m.absolute, -m.signed)
    >>> {k: round(v, 6) for k, v in compare(m, negated).items() if k.startswith("spearman")}
    {'spearman_abs': 1.0, 'spearman_signed': -1.0}
    """
    if reference.absolute.shape != other.absolute.shape:
        raise DeconvError(f"cannot compare maps of shapes {reference.absolute.shape} and {other.absolute.shape}")
    _, metrics, _ = require_analysis()
    a, b = reference.absolute, other.absolute
    window = min(7, *(side - (1 - side % 2) for side in a.shape))  # odd, at most the map's side
    ssim = float(metrics.structural_similarity(a, b, data_range=1.0, win_size=window)) \
        if min(a.shape) >= 3 else float("nan")
    return {
        "spearman_abs": _spearman(a, b),
        "spearman_signed": _spearman(reference.signed, other.signed),
        "ssim": ssim,
        "hog_pearson": _pearson(reference.hog(), other.hog()) if min(a.shape) >= 3 else float("nan"),
    }
