"""What a scan keeps per channel: the k images that activate it most, and histograms of the maxima.

An image's score for a channel is its strongest activation in that channel, at the first
maximum in row-major order. The kept lists are tensors of shape (channels, k), merged with
each batch by sorting, so memory stays O(layers x channels x k) however many images pass.
Higher values come first; values that differ by at most TIE_RTOL x |value| + TIE_ATOL count
as tied, and tied images are ordered by their place in the (sorted) image list. That keeps
the order the same when a different batch composition (a resumed run, several processes,
other hardware) changes the float32 sums in their last bits, which would flip a comparison
of exact values between near-equal activations. This is what lets an interrupted scan
resume and several processes split the work.

Histograms of every unit's per-image maximum (:class:`Histograms`) come from the same scores.
Bins have a width of a power of two and edges at its multiples, so two histograms merge
exactly: a bin of width w falls whole into one bin of width 2w. Each channel keeps the
narrowest width whose bins (at most ``BINS``) span its smallest and largest value so far.
That width depends only on the set's minimum and maximum, so the result does not depend
on the order the images come in, on batching, or on how the work is split.

Every accumulator has the same small interface (:class:`Accumulator`), so the one scan loop
(:mod:`deconvnet.dataset.runner`) feeds, checkpoints and merges any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

import torch
from torch import Tensor

from ..errors import DeconvError
from .results import Entry

EMPTY = torch.iinfo(torch.int64).max  # image index of an unfilled slot: it sorts after every real image
# Values this close count as tied (then the earlier image wins): float32 sums in another order or batch
# composition differ by a few units in the last place (~1e-7 relative), far below this.
TIE_RTOL = 1e-5
TIE_ATOL = 1e-6

Self = TypeVar("Self", bound="Accumulator")
Locate = Callable[[Tensor], Tensor]  # (C, B) bool -> (C, B) int64 flat positions, -1 where not asked


class Accumulator(Protocol):
    """A per-channel summary of a layer's scores, merged batch by batch and rank by rank."""

    def add(self: Self, values: Tensor, images: Tensor, locate: Locate) -> Self:
        """With a batch: ``values`` (C, B) of the images with indices ``images`` (B,); ``locate(asked)``
        gives the flat positions of the (C, B) pairs ``asked`` (-1 elsewhere), computed only then."""
        ...

    def merged(self: Self, other: Self) -> Self:
        ...

    def state(self) -> dict[str, Tensor]:
        ...


@dataclass
class TopK:
    """The best ``k`` (value, image index, flat position) per channel of one layer, best first.

    ``position`` is y * width + x, or -1 for a one-dimensional layer. Unfilled slots hold
    value -inf and image index EMPTY.
    """

    values: Tensor  # (C, k) float32
    images: Tensor  # (C, k) int64
    positions: Tensor  # (C, k) int64

    @classmethod
    def empty(cls, channels: int, k: int) -> "TopK":
        return cls(torch.full((channels, k), float("-inf")), torch.full((channels, k), EMPTY, dtype=torch.int64),
                   torch.full((channels, k), -1, dtype=torch.int64))

    def merge(self, values: Tensor, images: Tensor, positions: Tensor) -> "TopK":
        """Merged with candidates shaped (C, n); every image must appear at most once per channel."""
        k = self.values.shape[1]
        values = torch.cat([self.values, values.float().nan_to_num(nan=float("-inf"))], 1)
        images = torch.cat([self.images, images], 1)
        positions = torch.cat([self.positions, positions], 1)
        # Two stable sorts give the order (value descending, then image index ascending).
        order = torch.argsort(images, dim=1, stable=True)
        values, images, positions = (t.gather(1, order) for t in (values, images, positions))
        order = torch.argsort(values, dim=1, descending=True, stable=True)
        values, images, positions = (t.gather(1, order) for t in (values, images, positions))
        # Runs of neighbours within the tolerance are one tie group; within it the earlier image comes first.
        gap = values[:, :-1] - values[:, 1:]  # >= 0; NaN between two empty slots (-inf)
        tied = gap <= TIE_RTOL * values[:, :-1].abs() + TIE_ATOL
        group = torch.cat([torch.zeros_like(values[:, :1], dtype=torch.int64), (~tied).long().cumsum(1)], 1)
        order = torch.argsort(images, dim=1, stable=True)
        group = group.gather(1, order)
        order = order.gather(1, torch.argsort(group, dim=1, stable=True))[:, :k]
        return TopK(values.gather(1, order), images.gather(1, order), positions.gather(1, order))

    def merged(self, other: "TopK") -> "TopK":
        return self.merge(other.values, other.images, other.positions)

    def state(self) -> dict[str, Tensor]:
        return {"values": self.values, "images": self.images, "positions": self.positions}

    def entries(self, channels: list[int], width: int | None, names: list[str]) -> dict[int, list[Entry]]:
        """The lists as typed entries, per channel (rows of the tensors in ``channels`` order)."""
        table = {}
        for row, channel in enumerate(channels):
            entries = []
            for value, image, position in zip(self.values[row].tolist(), self.images[row].tolist(),
                                               self.positions[row].tolist()):
                if image == EMPTY:
                    break
                where = divmod(position, width) if position >= 0 and width is not None else None
                entries.append(Entry(names[image], where, value))
            table[channel] = entries
        return table

    def add(self, values: Tensor, images: Tensor, locate: Locate) -> "TopK":
        """With one batch's scores (C, B), of the images ``images`` (B,).

        Only a value that can enter the lists needs its position: one within reach of a channel's
        k-th value. Tie groups chain neighbours, each within the tolerance of the next, and hold at
        most k + B values here, so a value further below than k + B tolerances cannot be kept.
        """
        kth = self.values[:, -1:]  # (C, 1); -inf while a list is not full
        reach = (self.values.shape[1] + values.shape[1] + 1) * (TIE_RTOL * kth.abs() + TIE_ATOL)
        asked = ~(values.float() < kth - reach)  # NaN is asked too: it is kept as -inf
        return self.merge(values, images.expand_as(values), locate(asked))

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> "TopK":
        return cls(**state)


def batch_scores(activation: Tensor, channels: Tensor) -> tuple[Tensor, Locate]:
    """Each image's strongest activation per chosen channel, shaped (C, B), and where it is: a
    function of the pairs asked (the first maximum in row-major order, y * width + x; -1 for a
    fully connected layer). Positions are found only where asked: an argmax over a channels-last
    map is 15x slower than its max, and after the first batches few images enter a top k.
    """
    channels = channels.to(activation.device)
    if activation.dim() == 2:  # a fully connected layer: the value itself, no position
        chosen = activation.index_select(1, channels).T.float().cpu()
        return chosen, lambda asked: torch.full(asked.shape, -1, dtype=torch.int64)
    if activation.dim() != 4:
        raise DeconvError(f"expected a layer output shaped (N, C) or (N, C, H, W), received {tuple(activation.shape)}")
    n, c, height, width = activation.shape
    # the maxima in the map's own layout, then the channels picked (picking first copies the map)
    if activation.stride(1) == 1 and c > 1:  # channels last: (N, H*W, C) is a view
        maxima = activation.permute(0, 2, 3, 1).reshape(n, height * width, c).amax(1)
    else:
        maxima = activation.reshape(n, c, height * width).amax(2)
    values = maxima.index_select(1, channels).T.float().cpu()  # (C, B)

    def locate(asked: Tensor) -> Tensor:
        positions = torch.full(asked.shape, -1, dtype=torch.int64)
        rows, images = asked.nonzero(as_tuple=True)
        if len(rows):
            planes = activation[images.to(activation.device), channels[rows.to(activation.device)]]  # (K, H, W)
            positions[rows, images] = planes.reshape(len(rows), -1).argmax(1).cpu()
        return positions

    return values, locate


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

    def add(self, values: Tensor, images: Tensor, locate: Locate) -> "Histograms":
        """With one batch's scores (C, B); which images and where do not matter to a histogram."""
        return self.merged(Histograms.of(values))

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> "Histograms":
        return cls(**state)

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
