"""Occlusion sensitivity (Zeiler & Fergus, ECCV 2014, Sec. 4.2 and Fig. 7).

A grey square slides over the image; at every position the occluded image goes through
the model and one number is recorded: the activation of a chosen unit, the total
activation of its feature map, or a classifier's probability for a class. Where that
number drops, the model relies on what the square hides.

This module is the arithmetic: ``occlusion_map`` works on tensors and writes nothing.
``deconvnet.tasks.occlusion.files.occlusion`` goes from an image file to a figure
(drawn by ``deconvnet.tasks.occlusion.figure``).

>>> from deconvnet.models import load
>>> loaded = load("vgg16-hed")                                                 # doctest: +SKIP
>>> x = loaded.transform(open_image("assets/cat.jpg"))[None]                   # doctest: +SKIP
>>> result = occlusion_map(loaded.model, x, fill=mid_grey(loaded.transform),
...                        layer="conv5_3", channel=155)                       # doctest: +SKIP
>>> result.most_affected                                                       # doctest: +SKIP
Box(top=..., left=..., height=48, width=48)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ...engine import Unit
from ...engine.features import FeatureExtractor
from ...engine.receptive import Box
from ...engine.validate import check_channel, check_integer
from ...errors import DeconvError
from ...models.describe import mid_grey
from ...models.transforms import ImageTransform

DEFAULT_SIZE = 48  # pixels: about a fifth of a 224 input, the scale of an object part
DEFAULT_STRIDE = 16  # 12 x 12 positions on a 224 input
DEFAULT_BATCH_SIZE = 16


# ------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class OcclusionGrid:
    """Where the occluder went: a size x size square with its top-left corner at (tops[i], lefts[j]).

    The square always lies inside the image. Positions step by ``stride`` from the
    top-left corner; when the steps do not end exactly at the bottom or right border,
    one last position flush with that border is added so every pixel gets occluded.
    """

    size: int
    stride: int
    tops: tuple[int, ...]
    lefts: tuple[int, ...]
    image_size: tuple[int, int]  # (H, W)

    @classmethod
    def over(cls, image_size: tuple[int, int], size: int, stride: int) -> "OcclusionGrid":
        height, width = image_size
        return cls(size, stride, _starts(height, size, stride), _starts(width, size, stride), (height, width))

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.tops), len(self.lefts)

    def box(self, row: int, col: int) -> Box:
        """The occluder's pixels at map cell (row, col)."""
        return Box(self.tops[row], self.lefts[col], self.size, self.size)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """The occluder's centre for each row and each column, in pixel coordinates."""
        half = self.size / 2
        return np.asarray(self.tops) + half, np.asarray(self.lefts) + half

    def upsample(self, values: Tensor | np.ndarray) -> np.ndarray:
        """A (rows, cols) map spread over the image (H, W): each pixel takes the value of the
        position whose occluder is centred nearest to it (the map at its own resolution)."""
        values = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values)
        if values.shape != self.shape:
            raise ValueError(f"expected a map of shape {self.shape}, received {values.shape}")
        row_centres, col_centres = self.centres()
        height, width = self.image_size
        rows = np.abs(np.arange(height)[:, None] + 0.5 - row_centres[None, :]).argmin(1)
        cols = np.abs(np.arange(width)[:, None] + 0.5 - col_centres[None, :]).argmin(1)
        return values[rows][:, cols]


def _starts(side: int, size: int, stride: int) -> tuple[int, ...]:
    starts = list(range(0, side - size + 1, stride))
    if starts[-1] != side - size:
        starts.append(side - size)
    return tuple(starts)


# -------------------------------------------------------------------- result


@dataclass
class OcclusionResult:
    """``map[i, j]`` is the measured value with the occluder at ``grid.box(i, j)``."""

    map: Tensor  # (rows, cols), float64
    baseline: float  # the value for the unoccluded image
    grid: OcclusionGrid
    measure: str  # "unit", "total" or "probability"
    layer: str  # the layer read (its qualified name)
    unit: Unit | None  # the watched unit (its position fixed on the unoccluded image); None for a class
    target_class: int | None
    seconds: float  # time spent on the occluded forward passes

    @property
    def drop(self) -> Tensor:
        """How much each occluder position lowers the value (negative: it raises it)."""
        return self.baseline - self.map

    @property
    def most_affected_cell(self) -> tuple[int, int]:
        """(row, col) of the largest drop (the first one in row-major order on ties)."""
        flat = int(self.drop.argmax())
        return divmod(flat, self.map.shape[1])

    @property
    def most_affected(self) -> Box:
        """The occluder square, in input pixels, whose position lowers the value most."""
        return self.grid.box(*self.most_affected_cell)

    @property
    def most_affected_value(self) -> float:
        return float(self.map[self.most_affected_cell])


# ------------------------------------------------------------------ the maps


def occlusion_map(
    model: nn.Module | FeatureExtractor,
    x: Tensor,
    *,
    fill: Tensor | float,
    layer: str | None = None,
    channel: int | None = None,
    target_class: int | None = None,
    measure: str | None = None,
    size: int = DEFAULT_SIZE,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> OcclusionResult:
    """Slide a ``size`` x ``size`` square of ``fill`` over ``x`` (1, C, H, W) and map a value.

    What is measured:

    * ``layer`` and ``channel``: the channel's strongest unit on the unoccluded image
      fixes a position (y, x); ``measure="unit"`` (default) records that unit's
      activation, ``measure="total"`` the sum of the channel's whole map (the paper's
      Fig. 7 (b)).
    * ``target_class``: the softmax probability of that class over the model's output
      (or over ``layer``, e.g. ``"logits"``, when given), as in Fig. 7 (d).

    ``fill`` is the occluder's value in the model's input space: one number or one per
    channel, e.g. ``mid_grey(transform)``. Occluded images go through the model
    ``batch_size`` at a time, truncated after the layer read, in inference mode.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU()).eval()
    >>> r = occlusion_map(model, torch.rand(1, 3, 32, 32), fill=0.5, layer="0", channel=1,
    ...                   size=8, stride=8, progress=False)
    >>> r.map.shape, r.most_affected.height
    (torch.Size([4, 4]), 8)
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (1, C, H, W), received {type(x).__name__}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise DeconvError(f"expected one image of shape (1, C, H, W), received shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    shorter = min(height, width)
    size = check_integer(size, "size", minimum=1, maximum=shorter,
                         meaning=f"the occluder's side in pixels, at most the input's shorter side {shorter}")
    stride = check_integer(stride, "stride", minimum=1, maximum=shorter,
                           meaning="the step in pixels between occluder positions")
    batch_size = check_integer(batch_size, "batch_size", minimum=1, meaning="occluded images per forward pass")
    patch = _fill_patch(fill, x)
    measure = _check_measure(measure, layer, channel, target_class)
    grid = OcclusionGrid.over((height, width), size, stride)

    dn = model if isinstance(model, FeatureExtractor) else FeatureExtractor(model)
    try:
        if target_class is not None:
            read = _class_reader(dn, x, layer, target_class)
            unit = None
        else:
            assert layer is not None and channel is not None  # _check_measure: a class or a layer's channel
            read, unit = _channel_reader(dn, x, layer, channel, measure)
        layer_name = read.layer
        baseline = float(read(x)[0])
        cells = [(row, col) for row in range(grid.shape[0]) for col in range(grid.shape[1])]
        values = torch.empty(len(cells), dtype=torch.float64)
        started = time.perf_counter()
        with tqdm(total=len(cells), desc="occlusion", unit="image", disable=not progress, leave=False) as bar:
            for start in range(0, len(cells), batch_size):
                chunk = cells[start : start + batch_size]
                batch = x.expand(len(chunk), -1, -1, -1).clone()
                for k, (row, col) in enumerate(chunk):
                    top, left = grid.tops[row], grid.lefts[col]
                    batch[k, :, top : top + size, left : left + size] = patch
                values[start : start + len(chunk)] = read(batch).cpu()
                bar.update(len(chunk))
        seconds = time.perf_counter() - started
    finally:
        if dn is not model:
            dn.release()
    return OcclusionResult(values.view(grid.shape), baseline, grid, measure, layer_name, unit,
                           target_class, seconds)


class _Reader:
    """A batch of images -> one float64 value per image."""

    def __init__(self, dn: FeatureExtractor, layer: str, pick) -> None:
        self.dn, self.layer, self.pick = dn, layer, pick

    def __call__(self, batch: Tensor) -> Tensor:
        return self.pick(self.dn.activations(batch, [self.layer])[self.layer]).double()


def _channel_reader(dn: FeatureExtractor, x: Tensor, layer: str, channel: int, measure: str) -> tuple[_Reader, Unit]:
    dn.follow(x)  # a model recorded from a real forward pass has its graph from then on
    name = dn.layer(layer).name
    activation = dn.activations(x, [name])[name]
    if not isinstance(activation, Tensor) or activation.dim() not in (2, 4):
        shape = tuple(activation.shape) if isinstance(activation, Tensor) else type(activation).__name__
        raise DeconvError(f"expected layer {layer} to output (N, C) or (N, C, H, W), received {shape}")
    count = activation.shape[1]
    channel = check_channel(layer, channel, count)
    plane = activation[0, channel]
    if activation.dim() == 2:  # a fully connected layer: the channel is the unit
        return _Reader(dn, name, lambda a: a[:, channel]), Unit(0, channel, None, float(plane))
    flat = int(plane.argmax())  # the first maximum in row-major order, as the engine picks it
    y, x_ = divmod(flat, plane.shape[1])
    unit = Unit(0, channel, (y, x_), float(plane[y, x_]))
    if measure == "unit":
        return _Reader(dn, name, lambda a: a[:, channel, y, x_]), unit
    return _Reader(dn, name, lambda a: a[:, channel].double().flatten(1).sum(1)), unit


def _class_reader(dn: FeatureExtractor, x: Tensor, layer: str | None, target_class: int) -> _Reader:
    name = dn.layer(layer).name if layer is not None else _output_layer(dn, x)
    logits = dn.activations(x, [name])[name]
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise DeconvError(
            f"a class probability needs class scores of shape (N, classes), but {layer or 'the model output'} "
            f"({name}) has shape {shape}; use a classifier (e.g. --model vgg16) or watch a unit with "
            f"--layer and --channel instead"
        )
    count = logits.shape[1]
    target_class = check_integer(target_class, "the class index")
    if not 0 <= target_class < count:
        raise DeconvError(f"class {target_class} is out of range: the model scores {count} classes (0..{count - 1})")
    return _Reader(dn, name, lambda a: a.double().softmax(1)[:, target_class])


def _output_layer(dn: FeatureExtractor, x: Tensor) -> str:
    """The name of the layer whose result the model returns: its class scores (a ModelOutput's logits)."""
    dn.follow(x)  # a model recorded from a real forward pass has its graph from then on
    result = dn.graph.output_node()
    layer = dn.graph.logits or (dn.graph.layer_of(result) if result is not None else None)
    if layer is None:
        raise DeconvError("the model does not return one tensor computed by a layer, so it has no class "
                          "scores to read; pass the layer of the class scores explicitly (layer=...)")
    return layer.name


def _check_measure(measure: str | None, layer: str | None, channel: int | None, target_class) -> str:
    if target_class is not None:
        if channel is not None:
            raise DeconvError("give either a channel to watch (with its layer) or a target class, not both")
        if measure not in (None, "probability"):
            raise DeconvError(f"with a target class the measure is the class probability, not {measure!r}")
        return "probability"
    if layer is None or channel is None:
        missing = " and ".join(n for n, v in (("layer", layer), ("channel", channel)) if v is None)
        raise DeconvError(f"no {missing} given: name the unit to watch with a layer and a channel "
                          f"(--layer L --channel C), or a class whose probability to map (--class)")
    measure = "unit" if measure is None else measure
    if measure not in ("unit", "total"):
        raise DeconvError(f"unknown measure {measure!r} for a channel: expected 'unit' (the strongest unit's "
                          f"activation) or 'total' (the sum of the channel's map)")
    return measure


def _fill_patch(fill: Tensor | float, x: Tensor) -> Tensor:
    value = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    channels = x.shape[1]
    if value.dim() == 0:
        value = value.expand(channels)
    if value.dim() != 1 or value.shape[0] != channels:
        raise DeconvError(f"fill must be one number or one per input channel ({channels}), "
                          f"received shape {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise DeconvError("fill contains NaN or infinite values")
    return value.view(channels, 1, 1)


def layer_label(dn: FeatureExtractor, name: str) -> str:
    """A layer's name with its alias, for a title: 'features.28 (conv5_3)'."""
    alias = dn.layer(name).alias
    return f"{name} ({alias})" if alias else name


def occluded_input(x: Tensor, result: OcclusionResult, transform: ImageTransform) -> Tensor:
    """``x`` (1, C, H, W) with the mid-grey occluder at its most-affected position."""
    top, left, height, width = result.most_affected
    occluded = x.clone()
    occluded[0, :, top : top + height, left : left + width] = mid_grey(transform).view(-1, 1, 1)
    return occluded


def describe(result: OcclusionResult, layer: str | None = None, class_name: str | None = None) -> str:
    """What the map measures, in words: 'conv5_3 channel 155 at (y=3, x=7)', 'p(tabby)'."""
    if result.target_class is not None:
        label = repr(class_name) if class_name else str(result.target_class)
        return f"probability of class {label}" + (f" (class {result.target_class})" if class_name else "")
    unit = result.unit
    assert unit is not None  # a result without a class watched a unit
    where = f" at (y={unit.position[0]}, x={unit.position[1]})" if unit.position else ""
    what = "total activation of" if result.measure == "total" else "activation of"
    return f"{what} {layer or result.layer} channel {unit.channel}" + (where if result.measure == "unit" else "")
