"""Streaming histograms of every unit's per-image maximum, one per channel, merged batch by batch.

Bins have a width of a power of two and edges at its multiples, so two histograms merge
exactly: a bin of width w falls whole into one bin of width 2w. Each channel keeps the
narrowest width whose bins (at most ``BINS``) span its smallest and largest value so far.
That width depends only on the set's minimum and maximum, so the result does not depend
on the order the images come in, on batching, or on how the work is split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

BINS = 32
MIN_EXPONENT = -24  # narrowest bin: 2**-24 (a channel whose values are all equal)


@dataclass
class Histograms:
    """``counts[c, j]`` images have channel c's maximum in [(low[c] + j) * w, (low[c] + j + 1) * w).

    w = 2**exponent[c], the bin width of channel c.
    """

    counts: Tensor  # (C, BINS) int64
    exponent: Tensor  # (C,) int64
    low: Tensor  # (C,) int64: index of the first bin, in units of the bin width
    minimum: Tensor  # (C,) float64, +inf while empty
    maximum: Tensor  # (C,) float64, -inf while empty

    @classmethod
    def empty(cls, channels: int) -> "Histograms":
        return cls(torch.zeros(channels, BINS, dtype=torch.int64), torch.full((channels,), MIN_EXPONENT),
                   torch.zeros(channels, dtype=torch.int64), torch.full((channels,), float("inf"), dtype=torch.float64),
                   torch.full((channels,), float("-inf"), dtype=torch.float64))

    @classmethod
    def of(cls, values: Tensor) -> "Histograms":
        """The histograms of ``values`` shaped (C, n): n images' maxima per channel (NaN ignored)."""
        values = values.double()
        finite = torch.isfinite(values)
        empty = cls.empty(values.shape[0])
        low_value = torch.where(finite, values, torch.inf).amin(1)
        high_value = torch.where(finite, values, -torch.inf).amax(1)
        exponent = _fitting(empty.exponent, low_value, high_value)
        width = torch.pow(2.0, exponent.double())[:, None]
        low = _first_bin(low_value, exponent)
        index = (torch.floor(values / width).nan_to_num(0, 0, 0).long() - low[:, None]).clamp(0, BINS - 1)
        counts = torch.zeros_like(empty.counts).scatter_add_(1, index, finite.long())
        return cls(counts, exponent, low, low_value, high_value)

    def merged(self, other: "Histograms") -> "Histograms":
        """One histogram per channel of both sets of images."""
        low_value, high_value = torch.minimum(self.minimum, other.minimum), torch.maximum(self.maximum, other.maximum)
        exponent = _fitting(torch.maximum(self.exponent, other.exponent), low_value, high_value)
        low = _first_bin(low_value, exponent)
        counts = self._rebinned(exponent, low) + other._rebinned(exponent, low)
        return Histograms(counts, exponent, low, low_value, high_value)

    def _rebinned(self, exponent: Tensor, low: Tensor) -> Tensor:
        shift = (exponent - self.exponent).clamp(min=0)[:, None]
        index = torch.div(self.low[:, None] + torch.arange(BINS), 2 ** shift, rounding_mode="floor") - low[:, None]
        return torch.zeros_like(self.counts).scatter_add_(1, index.clamp(0, BINS - 1), self.counts)

    def state(self) -> dict[str, Tensor]:
        return {"counts": self.counts, "exponent": self.exponent, "low": self.low, "minimum": self.minimum,
                "maximum": self.maximum}

    def entry(self, channel: int) -> dict | None:
        """Channel ``channel`` as JSON: its non-empty bin range, {"start", "width", "counts"}; None if empty."""
        counts = self.counts[channel].tolist()
        used = [j for j, n in enumerate(counts) if n]
        if not used:
            return None
        width = 2.0 ** int(self.exponent[channel])
        return {"start": (int(self.low[channel]) + used[0]) * width, "width": width,
                "counts": counts[used[0]:used[-1] + 1]}


def _first_bin(low_value: Tensor, exponent: Tensor) -> Tensor:
    index = torch.floor(low_value / torch.pow(2.0, exponent.double()))
    return index.nan_to_num(0, 0, 0).long()


def _fitting(exponent: Tensor, low_value: Tensor, high_value: Tensor) -> Tensor:
    """The smallest exponent >= ``exponent`` whose BINS bins span [low_value, high_value], per channel."""
    exponent = exponent.clone()
    present = torch.isfinite(low_value)
    while True:
        width = torch.pow(2.0, exponent.double())
        span = torch.floor(high_value / width) - torch.floor(low_value / width)
        wide = present & (span >= BINS)
        if not wide.any():
            return exponent
        exponent += wide.long()
