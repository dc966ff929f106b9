"""Correspondence of object parts across images (Zeiler & Fergus, ECCV 2014, Sec. 5.1, Fig. 8, Table 1).

The same part (a dog's left eye) is hidden in several images of one kind of object. If a
layer "knows" the part, hiding it changes the layer's features the same way in every
image. For image i and layer l let ``eps_i = phi_l(x_i) - phi_l(x_i occluded)``; the
consistency of a part is

    Delta_l = mean over pairs i != j of  H(sign(eps_i), sign(eps_j)) / D

where H counts the positions where the two sign vectors differ and D is their length (all
units of the layer). Lower means more consistent. Units that the occluder cannot reach
have eps = 0 in every image, so they agree; sign 0 is a value like +1 and -1. Differences
within float32 rounding of the layer's largest value count as 0 (``TOLERANCE``).

The control: boxes of the same sizes as the parts, at random positions (independently per
image, ``repeats`` times, seeded), pooled into one row.

This module is the arithmetic and writes nothing: ``correspondence_deltas`` works on model
inputs (tensors) and boxes in input pixels; how an image-pixel box reaches the model input:
see ``map_box``. ``deconvnet.tasks.correspondence.files.correspondence`` goes from image
files and a JSON of part boxes in image pixels to a figure (``.figure``) and a JSON file.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ...engine.features import FeatureExtractor
from ...engine.receptive import Box
from ...engine.validate import check_integer
from ...errors import DeconvError
from ...models.transforms import ImageTransform

DEFAULT_REPEATS = 5
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 16
TOLERANCE = 1e-6  # |eps| at or below this fraction of the layer's largest |phi| counts as no change
RANDOM_ROW = "random"


@dataclass(frozen=True)
class Spread:
    """Delta of one part at one layer: the mean over image pairs, its standard deviation over pairs."""

    mean: float
    spread: float
    pairs: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.spread:.3f}"


@dataclass
class CorrespondenceResult:
    """``table[part][layer]`` for each part, and ``random[layer]`` for the control boxes."""

    layers: list[str]  # as given
    parts: list[str]
    table: dict[str, dict[str, Spread]]
    random: dict[str, Spread]
    repeats: int
    seed: int
    seconds: float

    def rows(self) -> list[tuple[str, list[Spread]]]:
        """(row label, one Spread per layer): the parts, then the random control."""
        rows = [(part, [self.table[part][layer] for layer in self.layers]) for part in self.parts]
        return rows + [(RANDOM_ROW, [self.random[layer] for layer in self.layers])]

    def as_dict(self) -> dict:
        cell = lambda s: {"mean": s.mean, "spread": s.spread, "pairs": s.pairs}  # noqa: E731
        return {"layers": self.layers,
                "parts": {p: {l: cell(self.table[p][l]) for l in self.layers} for p in self.parts},
                "random": {l: cell(self.random[l]) for l in self.layers},
                "repeats": self.repeats, "seed": self.seed}


# ------------------------------------------------------------------ the measure


def pairwise_hamming(signs: Tensor) -> Tensor:
    """Hamming distances between the rows of ``signs`` (N, D), as fractions of D, for all pairs i < j.

    >>> pairwise_hamming(torch.tensor([[1, 0, -1, 1], [1, 1, -1, -1], [1, 0, -1, 1]]))
    tensor([0.5000, 0.0000, 0.5000], dtype=torch.float64)
    """
    if signs.dim() != 2 or signs.shape[0] < 2:
        raise DeconvError(f"expected sign vectors of at least two images, shaped (N >= 2, D), "
                          f"received shape {tuple(signs.shape)}")
    # Agreements of every pair at once: for each sign value, (N, D) indicators times their transpose.
    agree = torch.stack([(signs == value).double() @ (signs == value).double().T for value in (-1, 0, 1)]).sum(0)
    rows, cols = torch.triu_indices(len(signs), len(signs), offset=1)
    return 1.0 - agree[rows, cols] / signs.shape[1]


def delta(eps: Tensor) -> Spread:
    """Delta for the feature changes ``eps`` (N, ...) of N images: mean and spread of the pairwise distances.

    >>> delta(torch.tensor([[0.5, -2.0], [0.1, -1.0], [0.3, 4.0]]))
    Spread(mean=0.3333333333333333, spread=0.2886751345948129, pairs=3)
    """
    distances = pairwise_hamming(torch.sign(eps.flatten(1)).to(torch.int8))
    return _spread(distances)


def _spread(distances: Tensor) -> Spread:
    spread = float(distances.std()) if len(distances) > 1 else 0.0
    return Spread(float(distances.mean()), spread, len(distances))


# -------------------------------------------------------------- tensors in, table out


def correspondence_deltas(
    model: nn.Module | FeatureExtractor,
    inputs: Tensor,
    boxes: Sequence[Mapping[str, Box]],
    *,
    fill: Tensor | float,
    layers: Sequence[str],
    repeats: int = DEFAULT_REPEATS,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> CorrespondenceResult:
    """Delta per part and layer for model inputs ``inputs`` (N, C, H, W) and their part boxes.

    ``boxes[i]`` maps part names to a Box (top, left, height, width) in input pixels of
    image i; a part counts over the images that have it (at least two). ``fill`` is the
    occluder's value in input space (one number or one per channel, e.g. ``mid_grey``).
    Each image runs once with every occluder (its parts, then ``repeats`` random boxes of
    each part's size) as batches, truncated after the deepest layer.

    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    >>> x = torch.rand(3, 3, 16, 16)
    >>> r = correspondence_deltas(model, x, [{"eye": Box(2, 2, 4, 4)}] * 3, fill=0.5, layers=["1"],
    ...                           repeats=2, progress=False)
    >>> r.table["eye"]["1"].pairs, r.random["1"].pairs
    (3, 6)
    """
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        raise DeconvError(f"expected model inputs shaped (N, C, H, W), received "
                          f"{tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__}")
    count, height, width = inputs.shape[0], inputs.shape[2], inputs.shape[3]
    if count < 2:
        raise DeconvError(f"correspondence compares images in pairs: it needs at least two images, received {count}")
    if len(boxes) != count:
        raise DeconvError(f"expected part boxes for each of the {count} images, received {len(boxes)}")
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise DeconvError("expected at least one layer, received none")
    repeats = check_integer(repeats, "repeats", minimum=0)
    batch_size = check_integer(batch_size, "batch_size", minimum=1)
    parts = list(dict.fromkeys(part for image in boxes for part in image))
    for part in parts:
        having = sum(part in image for image in boxes)
        if having < 2:
            raise DeconvError(f"part {part!r} is marked in {having} image(s); each part needs at least two "
                              f"images to compare (mark it in more images, or remove it)")
    for i, image in enumerate(boxes):
        for part, box in image.items():
            top, left, h, w = box
            if h < 1 or w < 1 or top < 0 or left < 0 or top + h > height or left + w > width:
                raise DeconvError(f"box {tuple(box)} of part {part!r} in image {i} is empty or leaves the "
                                  f"{height}x{width} model input")
    patch = torch.as_tensor(fill, dtype=inputs.dtype).reshape(-1, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    randoms = [[[(part, _random_box(box, height, width, generator)) for part, box in image.items()]
                for image in boxes] for _ in range(repeats)]  # [repeat][image] -> [(part, box)]

    signs: dict[str, dict[str, list[Tensor]]] = {layer: {part: [] for part in parts} for layer in layers}
    random_signs: dict[str, dict[tuple[int, str], list[Tensor]]] = {layer: {} for layer in layers}
    dn = model if isinstance(model, FeatureExtractor) else FeatureExtractor(model)
    started = time.perf_counter()
    try:
        dn.follow(inputs[:1])  # a model recorded from a real forward pass names its layers after one
        for layer in layers:
            dn.layer(layer)  # an unknown name fails before any work, listing the valid ones
        with tqdm(total=count, desc="correspondence", unit="image", disable=not progress, leave=False) as bar:
            for i in range(count):
                # (repeat or None for the part itself, part, box)
                occluders: list[tuple[int | None, str, Box]] = [(None, part, box) for part, box in boxes[i].items()]
                occluders += [(r, part, box) for r in range(repeats) for part, box in randoms[r][i]]
                # The unoccluded image rides in every batch, so eps compares outputs of one computation.
                changes = _feature_changes(dn, inputs[i], [box for _, _, box in occluders], patch, layers, batch_size)
                for layer in layers:
                    for (repeat, part, _), change in zip(occluders, changes[layer]):
                        if repeat is None:
                            signs[layer][part].append(change)
                        else:
                            random_signs[layer].setdefault((repeat, part), []).append(change)
                bar.update(1)
    finally:
        if dn is not model:
            dn.release()
    table = {part: {layer: _spread(pairwise_hamming(torch.stack(signs[layer][part]))) for layer in layers}
             for part in parts}
    random = {}
    for layer in layers:
        pooled = [pairwise_hamming(torch.stack(group)) for group in random_signs[layer].values()]
        random[layer] = _spread(torch.cat(pooled)) if pooled else Spread(math.nan, math.nan, 0)
    return CorrespondenceResult(layers, parts, table, random, repeats, seed, time.perf_counter() - started)


def _random_box(box: Box, height: int, width: int, generator: torch.Generator) -> Box:
    top = int(torch.randint(0, height - box[2] + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - box[3] + 1, (1,), generator=generator))
    return Box(top, left, box[2], box[3])


def _feature_changes(dn: FeatureExtractor, x: Tensor, occluders: list[Box], patch: Tensor, layers: list[str],
                     batch_size: int) -> dict[str, list[Tensor]]:
    """sign(phi(x) - phi(x occluded)) per layer and occluder, as int8 vectors."""
    changes: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    per_batch = max(batch_size - 1, 1)
    for start in range(0, len(occluders), per_batch):
        chunk = occluders[start:start + per_batch]
        batch = x.expand(len(chunk) + 1, -1, -1, -1).clone()  # (1 + B, C, H, W): row 0 stays clean
        for row, (top, left, h, w) in enumerate(chunk, start=1):
            batch[row, :, top:top + h, left:left + w] = patch
        outputs = dn.activations(batch, layers)
        for layer in layers:
            features = outputs[layer].float().reshape(len(batch), -1)  # (1 + B, D)
            eps = features[:1] - features[1:]
            tolerance = TOLERANCE * float(features[0].abs().max())
            eps = torch.where(eps.abs() <= tolerance, torch.zeros_like(eps), eps)
            changes[layer].extend(torch.sign(eps).to(torch.int8))
    return changes


# ------------------------------------------------------------ image files in


def map_box(box: Sequence[float], image_size: tuple[int, int], transform: ImageTransform) -> Box:
    """A box [x0, y0, x1, y1] in image pixels -> Box(top, left, height, width) in model-input pixels.

    The image goes through ``transform``'s geometry (``resized_size``: the shorter side to
    ``resize``, or squashed to ``resize_to``; then ``crop_box``, the centre crop). The box is scaled by the
    same factors, shifted by the crop's corner, widened to whole pixels (floor the start, ceil
    the end) and clipped to the crop. A box that the crop cuts away entirely is an error.
    ``image_size`` is (width, height) as PIL gives it. x1, y1 are exclusive.

    >>> from deconvnet.models import IMAGENET_TRANSFORM
    >>> map_box([100, 50, 200, 150], (400, 300), IMAGENET_TRANSFORM)  # resized to 341x256, crop at left 58, top 16
    Box(top=26, left=27, height=86, width=86)
    """
    width, height = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    new_width, new_height = transform.resized_size(width, height)
    left, top, crop_w, crop_h = transform.crop_box(new_width, new_height)
    scale_x, scale_y = new_width / width, new_height / height
    start_y = max(math.floor(y0 * scale_y - top + 1e-9), 0)
    start_x = max(math.floor(x0 * scale_x - left + 1e-9), 0)
    end_y = min(math.ceil(y1 * scale_y - top - 1e-9), crop_h)
    end_x = min(math.ceil(x1 * scale_x - left - 1e-9), crop_w)
    if end_y <= start_y or end_x <= start_x:
        raise DeconvError(f"box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] falls outside the centre crop the model sees "
                          f"(the image is resized to {new_width}x{new_height} and cropped to {crop_w}x{crop_h} at "
                          f"left={left}, top={top}); move the box or choose another image")
    return Box(start_y, start_x, end_y - start_y, end_x - start_x)


def format_table(result: CorrespondenceResult) -> str:
    """The table as text: one row per part and the random control, one column per layer (mean ± spread)."""
    header = ["part", *result.layers]
    rows = [[label, *(str(cell) for cell in cells)] for label, cells in result.rows()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])
