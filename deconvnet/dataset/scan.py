"""One pass over a data set keeping, per channel, the k images that activate it most.

An image's score for a channel is its strongest activation in that channel, at the first
maximum in row-major order. The kept lists are tensors of shape (channels, k), merged with
each batch by sorting, so memory stays O(layers x channels x k) however many images pass.
Higher values come first; values that differ by at most TIE_RTOL x |value| + TIE_ATOL count
as tied, and tied images are ordered by their place in the (sorted) image list. That keeps
the order the same when a different batch composition (a resumed run, several processes,
other hardware) changes the float32 sums in their last bits, which would flip a comparison
of exact values between near-equal activations. This is what lets an interrupted scan
resume and several processes split the work.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DeconvError
from ..fileio import write_bytes_atomic
from ..models.transforms import ImageTransform
from .images import UnreadableImage, open_image

EMPTY = torch.iinfo(torch.int64).max  # image index of an unfilled slot: it sorts after every real image
# Values this close count as tied (then the earlier image wins): float32 sums in another order or batch
# composition differ by a few units in the last place (~1e-7 relative), far below this.
TIE_RTOL = 1e-5
TIE_ATOL = 1e-6


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

    def entries(self, channels: list[int], width: int | None, names: list[str]) -> dict[str, list[dict]]:
        """The lists as top9.json writes them: {"<channel>": [{"image", "y", "x", "value"}, ...]}."""
        table = {}
        for row, channel in enumerate(channels):
            entries = []
            for value, image, position in zip(self.values[row].tolist(), self.images[row].tolist(),
                                               self.positions[row].tolist()):
                if image == EMPTY:
                    break
                y, x = divmod(position, width) if position >= 0 else (None, None)
                entries.append({"image": names[image], "y": y, "x": x, "value": value})
            table[str(channel)] = entries
        return table


def batch_scores(activation: Tensor, channels: Tensor) -> tuple[Tensor, Tensor]:
    """Each image's strongest activation per chosen channel and its flat position, shaped (C, B)."""
    chosen = activation.index_select(1, channels.to(activation.device))
    if chosen.dim() == 2:  # a fully connected layer: the value itself, no position
        return chosen.T.float().cpu(), torch.full(chosen.T.shape, -1, dtype=torch.int64)
    if chosen.dim() != 4:
        raise DeconvError(f"expected a layer output shaped (N, C) or (N, C, H, W), received {tuple(activation.shape)}")
    flat = chosen.flatten(2)
    position = flat.argmax(2, keepdim=True)  # the first maximum in row-major order
    value = flat.gather(2, position)
    return value.squeeze(2).T.float().cpu(), position.squeeze(2).T.cpu()


class ImageFiles(Dataset):
    """(index, tensor or None, reason) for each (index, path); unreadable files give None."""

    def __init__(self, items: Sequence[tuple[int, Path]], transform: ImageTransform) -> None:
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None, str | None]:
        index, path = self.items[i]
        try:
            return index, self.transform(open_image(path)), None
        except UnreadableImage as error:
            return index, None, str(error)


def collate(items: list[tuple[int, Tensor | None, str | None]]) -> tuple[Tensor, Tensor | None, list[tuple[int, str]]]:
    """A batch of the readable images: (their indices, stacked tensors or None, [(index, reason)])."""
    good = [(index, x) for index, x, _ in items if x is not None]
    failed = [(index, reason or "unreadable") for index, x, reason in items if x is None]
    if not good:
        return torch.empty(0, dtype=torch.int64), None, failed
    shapes = {tuple(x.shape) for _, x in good}
    if len(shapes) > 1:
        raise DeconvError(f"the transform gave images of different sizes {sorted(shapes)}: "
                          "it must crop every image to one size to batch them")
    return torch.tensor([index for index, _ in good]), torch.stack([x for _, x in good]), failed


@dataclass
class ScanState:
    """Where one process's share of a scan stands: ``done`` items of its shard, kept lists, skips."""

    fingerprint: str
    done: int
    kept: dict[str, TopK]
    skipped: list[tuple[int, str]]

    def save(self, path: Path) -> None:
        payload = {"fingerprint": self.fingerprint, "done": self.done,
                   "kept": {layer: top.state() for layer, top in self.kept.items()},
                   "skipped": [[index, reason] for index, reason in self.skipped]}
        # Serialized in memory (it is small), so a full disk fails in Python's write with an OSError
        # that names the file, not inside torch's own file writer with a RuntimeError.
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        write_bytes_atomic(path, buffer.getvalue())

    def check(self, fingerprint: str, path: Path) -> None:
        """Refuse to resume under other settings, naming the ones that differ."""
        if self.fingerprint == fingerprint:
            return
        before, now = json.loads(self.fingerprint), json.loads(fingerprint)
        differ = [key for key in now if before.get(key) != now[key]]
        raise DeconvError(f"{path} was left by an interrupted run with other settings (different "
                          f"{', '.join(differ)}); re-run with --restart to discard it and start over, "
                          "or choose another output folder")

    @classmethod
    def fingerprint_of(cls, path: Path) -> str | None:
        try:
            return cls.load(path).fingerprint
        except DeconvError:
            return None

    @classmethod
    def load(cls, path: Path) -> "ScanState":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            kept = {layer: TopK(**state) for layer, state in payload["kept"].items()}
            skipped = [(int(index), str(reason)) for index, reason in payload["skipped"]]
            return cls(str(payload["fingerprint"]), int(payload["done"]), kept, skipped)
        except Exception as error:  # any damage: the caller says how to start over
            raise DeconvError(f"cannot read the scan checkpoint {path} ({type(error).__name__}: {error}); "
                              "re-run with --restart to discard it") from error


def remove(path: Path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
