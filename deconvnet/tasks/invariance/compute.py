"""Invariance of features to translation, scale and rotation (Zeiler & Fergus, ECCV 2014, Sec. 4.3, Fig. 5).

For each image and each transformation on a grid of parameters, the image is transformed
and sent through the model with its untransformed self; at two or more layers the
Euclidean distance between the feature vectors of the original and the transformed image
is recorded (also divided by the original's norm, so layers compare), and, for a
classifier, the probability of the true class. The paper found a large change at layer 1
for small transformations, a smaller and near-linear one at layer 7 for translation and
scale, and no rotation invariance except for rotationally symmetric objects.

How a picture is transformed (one way, before the model's normalization): the picture is
resized as the model's transform does (shorter side to ``resize``); the model input is then
a ``crop x crop`` window of it, sampled bilinearly, whose centre is the centre crop's:

* **translation** by ``t`` pixels (model input pixels) shifts the window up by ``t``, so the
  content moves *down* by ``t`` (negative: up);
* **scale** ``s`` shrinks the window about its centre by ``1/s``: the content is zoomed by ``s``;
* **rotation** by ``a`` degrees turns the content counter-clockwise about the window's centre.

Pixels the window takes from outside the picture are mid-grey. The identity (0, 1, 0)
gives exactly the model's own input. All transformed inputs of one image run as one batch.

>>> import torch
>>> from PIL import Image
>>> from deconvnet.models.transforms import ImageTransform
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
...                             torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
>>> curves = invariance_curves(model, ImageTransform(resize=40, crop=32), Image.new("RGB", (48, 40), "white"),
...                            ["1", "2"], {"translation": [-4, 0, 4]}, target_class=1)
>>> float(curves.distance["translation"]["1"][1])
0.0
>>> bool(curves.probability["translation"][1] == curves.baseline_probability)
True
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor, nn

from ...errors import DeconvError
from ...models.transforms import ImageTransform
from ..common import called_modules

TRANSFORMS = ("translation", "scale", "rotation")
DEFAULT_GRIDS: dict[str, tuple[float, ...]] = {
    "translation": tuple(float(t) for t in range(-60, 61, 5)),  # model input pixels
    "scale": tuple(round(1.0 + 0.1 * i, 10) for i in range(9)),  # 1.0 .. 1.8
    "rotation": tuple(float(a) for a in range(0, 360, 10)),  # degrees, 0 .. 350
}
IDENTITY = {"translation": 0.0, "scale": 1.0, "rotation": 0.0}
UNITS = {"translation": "pixels (content moves down)", "scale": "zoom factor",
         "rotation": "degrees (counter-clockwise)"}
GREY = 128
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Tanh, nn.Sigmoid)
PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten)
MAX_ASPECT = 4.0


# ------------------------------------------------------------------ geometry


def model_picture(image: Image.Image, transform: ImageTransform) -> tuple[Tensor, tuple[int, int]]:
    """The picture as the model's transform resizes it, (3, H, W) float in 0..255, and the crop size.

    A very long image is first cut to a 4:1 window about its centre, so resizing it stays cheap.
    """
    image = image.convert("RGB")
    width, height = image.size
    if max(width, height) > MAX_ASPECT * min(width, height) and not transform.resize_to:  # resize_to squashes all
        keep_w, keep_h = min(width, int(MAX_ASPECT * height)), min(height, int(MAX_ASPECT * width))
        image = TF.center_crop(image, [keep_h, keep_w])
    if transform.resize or transform.resize_to:
        new_width, new_height = transform.resized_size(*image.size)
        image = TF.resize(image, [new_height, new_width], interpolation=TF.InterpolationMode(transform.interpolation),
                          antialias=True)
    _, _, crop_w, crop_h = transform.crop_box(image.width, image.height)
    crop = (crop_h, crop_w)
    if crop[0] > image.height or crop[1] > image.width:
        raise DeconvError(f"the model's crop ({crop[0]}x{crop[1]}) is larger than the resized picture "
                          f"({image.height}x{image.width}); use a model transform that resizes to at least the crop")
    return TF.pil_to_tensor(image).float(), crop


def check_grid(kind: str, values: Sequence[float], picture_size: Sequence[int], crop: tuple[int, int]) -> None:
    """Refuse parameters that leave no pixel of the picture in the model's input."""
    if kind not in TRANSFORMS:
        raise DeconvError(f"unknown transformation {kind!r}: expected one of {', '.join(TRANSFORMS)}")
    if len(values) == 0:
        raise DeconvError(f"the {kind} grid is empty: give at least one value")
    if not all(math.isfinite(v) for v in values):
        raise DeconvError(f"the {kind} grid holds NaN or infinite values: {list(values)}")
    if kind == "scale" and min(values) <= 0:
        raise DeconvError(f"scale must be positive (1 is the original, 2 zooms in twice), received {min(values):g}")
    if kind == "translation":
        height = picture_size[0]
        top = int(round((height - crop[0]) / 2.0))
        low, high = top - height + 1, top + crop[0] - 1  # beyond these the window misses the picture
        bad = [v for v in values if not low <= v <= high]
        if bad:
            raise DeconvError(f"a vertical translation of {bad[0]:g} pixels leaves no pixel of the picture in the "
                              f"{crop[0]}x{crop[1]} input (the resized picture is {height} pixels tall): "
                              f"use translations from {low} to {high}")


def transformed_inputs(picture: Tensor, crop: tuple[int, int], kind: str, values: Sequence[float],
                       fill: float = GREY) -> Tensor:
    """The crop window of ``picture`` (3, H, W) under each parameter: (N, 3, crop_h, crop_w), rounded to 0..255.

    >>> picture = torch.arange(36.0).view(1, 6, 6).expand(3, -1, -1)
    >>> transformed_inputs(picture, (2, 2), "translation", [0, 1])[:, 0].tolist()
    [[[14.0, 15.0], [20.0, 21.0]], [[8.0, 9.0], [14.0, 15.0]]]
    """
    _, height, width = picture.shape
    top, left = int(round((height - crop[0]) / 2.0)), int(round((width - crop[1]) / 2.0))  # torchvision's
    centre_y, centre_x = top + (crop[0] - 1) / 2.0, left + (crop[1] - 1) / 2.0
    u = torch.arange(crop[0], dtype=torch.float64).view(-1, 1) - (crop[0] - 1) / 2.0  # (h, 1) rows from centre
    v = torch.arange(crop[1], dtype=torch.float64).view(1, -1) - (crop[1] - 1) / 2.0  # (1, w) columns
    ys, xs = [], []
    for value in values:
        value = float(value)
        if kind == "translation":
            ys.append(centre_y + u - value + 0 * v)
            xs.append(centre_x + v + 0 * u)
        elif kind == "scale":
            ys.append(centre_y + u / value + 0 * v)
            xs.append(centre_x + v / value + 0 * u)
        elif kind == "rotation":
            cos, sin = _snap(math.cos(math.radians(value))), _snap(math.sin(math.radians(value)))
            ys.append(centre_y + v * sin + u * cos)
            xs.append(centre_x + v * cos - u * sin)
        else:
            raise DeconvError(f"unknown transformation {kind!r}: expected one of {', '.join(TRANSFORMS)}")
    return _bilinear(picture, torch.stack(ys), torch.stack(xs), fill).round().clamp(0, 255)


def _snap(value: float) -> float:
    """cos/sin of multiples of 90 degrees exactly, so those rotations move whole pixels."""
    for exact in (-1.0, 0.0, 1.0):
        if abs(value - exact) < 1e-12:
            return exact
    return value


def _bilinear(picture: Tensor, ys: Tensor, xs: Tensor, fill: float) -> Tensor:
    """Sample picture (3, H, W) at (N, h, w) coordinates (pixel centres at integers); outside is ``fill``."""
    _, height, width = picture.shape
    padded = torch.nn.functional.pad(picture.float(), (1, 1, 1, 1), value=fill)  # index i + 1 is pixel i
    flat = padded.reshape(3, -1)  # (3, (H + 2) * (W + 2))
    y0, x0 = ys.floor(), xs.floor()
    wy, wx = (ys - y0).float().unsqueeze(1), (xs - x0).float().unsqueeze(1)  # (N, 1, h, w)

    def at(dy: int, dx: int) -> Tensor:  # -> (N, 3, h, w); a clamped index lands in the fill border
        rows = (y0.long() + (1 + dy)).clamp(0, height + 1)
        cols = (x0.long() + (1 + dx)).clamp(0, width + 1)
        return flat[:, (rows * (width + 2) + cols).flatten()].view(3, *ys.shape).transpose(0, 1)

    top = (1 - wx) * at(0, 0) + wx * at(0, 1)
    bottom = (1 - wx) * at(1, 0) + wx * at(1, 1)
    return (1 - wy) * top + wy * bottom


def normalize(pictures: Tensor, transform: ImageTransform) -> Tensor:
    """Pictures (N, 3, h, w) in 0..255 -> model inputs, through the model's own transform (no resize, no crop)."""
    plain = dataclasses.replace(transform, resize=None, resize_to=None, crop=None)
    as_bytes = pictures.to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return torch.stack([plain(Image.fromarray(picture)) for picture in as_bytes])


# ------------------------------------------------------------------ features


def default_layers(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> tuple[str, str]:
    """An early and a late layer: the first activation module the forward pass runs, and the
    last module before the final Linear (skipping dropout and flatten), else the last module.

    >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
    ...                         torch.nn.Flatten(), torch.nn.Dropout(), torch.nn.Linear(4, 2)).eval()
    >>> default_layers(m, (16, 16))
    ('1', '2')
    """
    called = called_modules(model, input_size, lambda module: not list(module.children()))
    if not called:
        raise DeconvError(f"{type(model).__name__} runs no modules to read features from")
    early = next((name for name, module in called if isinstance(module, ACTIVATIONS)), called[0][0])
    linear = [i for i, (_, module) in enumerate(called) if isinstance(module, nn.Linear)]
    late = called[-1][0]
    if linear:
        before = [name for name, module in called[: linear[-1]] if not isinstance(module, PASS_THROUGH)]
        late = before[-1] if before else late
    return early, late


class LayerReader:
    """One forward pass: the flattened features of some layers (N, D) and the model's output.

    Layers that are modules are read with forward hooks (removed after each call); a
    functional operation (``add_3``, ``flatten``) is read through the engine's activations.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], input_size: tuple[int, int] | None = None) -> None:
        from ...engine.features import FeatureExtractor

        self.model = model
        self.dn = FeatureExtractor(model)
        if input_size is not None:  # a model recorded from a real forward pass names its layers after one
            self.dn.follow_size(input_size)
        self.layers = [self.dn.layer(name) for name in layers]
        self.labels = [f"{layer.name} ({layer.alias})" if layer.alias else layer.name for layer in self.layers]

    def close(self) -> None:
        self.dn.release()

    def __call__(self, batch: Tensor) -> tuple[list[Tensor], Tensor]:
        found: dict[int, Tensor] = {}
        calls: dict[int, int] = {}
        handles = []
        functional = []
        for index, layer in enumerate(self.layers):
            if layer.module is None:
                functional.append(index)
                continue
            base, _, nth = layer.name.partition(":")
            wanted = int(nth or 1)

            def record(_module, _inputs, output, index=index, wanted=wanted) -> None:
                calls[index] = calls.get(index, 0) + 1
                if calls[index] == wanted:  # clone: a later in-place ReLU would overwrite it
                    found[index] = output.detach().flatten(1).double().clone()

            handles.append(self.model.get_submodule(base).register_forward_hook(record))
        try:
            with torch.inference_mode():  # channels-last: oneDNN's faster layout on CPU (as the scan uses)
                output = self.model(batch.contiguous(memory_format=torch.channels_last))
        finally:
            for handle in handles:
                handle.remove()
        if functional:
            names = [self.layers[i].name for i in functional]
            values = self.dn.activations(batch, names)
            for index, name in zip(functional, names):
                found[index] = values[name].flatten(1).double()
        return [found[i] for i in range(len(self.layers))], output


# ------------------------------------------------------------------ curves


@dataclass
class ImageCurves:
    """One image's curves: ``distance[kind][layer]`` and ``probability[kind]`` follow ``grids[kind]``."""

    image: str
    grids: dict[str, list[float]]
    layers: list[str]  # labels: "name (alias)"
    distance: dict[str, dict[str, np.ndarray]]
    relative: dict[str, dict[str, np.ndarray]]
    norms: dict[str, float]  # ||phi(x)|| of the original, per layer
    probability: dict[str, np.ndarray] | None
    baseline_probability: float | None
    target_class: int | None
    thumbnails: dict[str, np.ndarray]  # kind -> (N, h, w, 3) uint8, the transformed inputs
    seconds: float


def invariance_curves(
    model: nn.Module | LayerReader,
    transform: ImageTransform,
    image: Image.Image,
    layers: Sequence[str],
    grids: Mapping[str, Sequence[float]] = DEFAULT_GRIDS,
    *,
    target_class: int | None = None,
    name: str = "",
) -> ImageCurves:
    """Distances at ``layers`` and the class probability for one PIL image under every transformation.

    One batch holds the original and all transformed inputs. ``target_class`` (an index)
    selects the class probability; None reads the probability of the class the model
    predicts for the original (when the model's output is (N, classes)).
    """
    reader = model if isinstance(model, LayerReader) else LayerReader(model, layers, transform.input_size)
    started = time.perf_counter()
    try:
        picture, crop = model_picture(image, transform)
        grid = {kind: [float(v) for v in values] for kind, values in grids.items()}
        for kind, values in grid.items():
            check_grid(kind, values, tuple(picture.shape[1:]), crop)
        pieces = [transformed_inputs(picture, crop, "translation", [0.0])]
        pieces += [transformed_inputs(picture, crop, kind, values) for kind, values in grid.items()]
        pictures = torch.cat(pieces)  # (1 + sum of grid sizes, 3, h, w), the original first
        features, output = reader(normalize(pictures, transform))
    finally:
        if reader is not model:
            reader.close()
    probabilities = None
    if isinstance(output, Tensor) and output.dim() == 2 and output.shape[1] > 1:
        probabilities = output.double().softmax(1)
        if target_class is None:
            target_class = int(probabilities[0].argmax())
        if not 0 <= target_class < probabilities.shape[1]:
            raise DeconvError(f"class {target_class} is out of range: the model scores {probabilities.shape[1]} "
                              f"classes (0..{probabilities.shape[1] - 1})")
    elif target_class is not None:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise DeconvError(f"a class probability needs a classifier whose output is (N, classes); this model returns "
                          f"{shape}. Leave out the class, or use a classifier such as efficientnet-lite0")
    distance: dict[str, dict[str, np.ndarray]] = {}
    relative: dict[str, dict[str, np.ndarray]] = {}
    norms = {label: float(f[0].norm()) for label, f in zip(reader.labels, features)}
    probability: dict[str, np.ndarray] | None = {} if probabilities is not None else None
    thumbnails = {}
    start = 1
    for kind, values in grid.items():
        rows = slice(start, start + len(values))
        distance[kind], relative[kind] = {}, {}
        for label, f in zip(reader.labels, features):
            d = (f[rows] - f[0]).norm(dim=1).numpy()  # Euclidean distance to the original
            distance[kind][label] = d
            relative[kind][label] = d / norms[label] if norms[label] > 0 else np.full_like(d, np.nan)
        if probability is not None and probabilities is not None:
            probability[kind] = probabilities[rows, target_class].numpy()
        thumbnails[kind] = pictures[rows].to(torch.uint8).permute(0, 2, 3, 1).numpy()
        start += len(values)
    baseline = float(probabilities[0, target_class]) if probabilities is not None and target_class is not None \
        else None
    return ImageCurves(name, grid, list(reader.labels), distance, relative, norms, probability, baseline,
                       target_class if probabilities is not None else None, thumbnails,
                       time.perf_counter() - started)


def parse_grid(text: str) -> list[float]:
    """``START:STOP:STEP`` (STOP included when the steps reach it) or a comma-separated list.

    >>> parse_grid("-10:10:5"), parse_grid("1,1.5,2")
    ([-10.0, -5.0, 0.0, 5.0, 10.0], [1.0, 1.5, 2.0])
    """
    try:
        numbers = [float(part) for part in text.split(":" if ":" in text else ",") if part.strip()]
    except ValueError:
        numbers = []
    if ":" not in text:
        if not numbers:
            raise DeconvError(f"expected START:STOP:STEP or a comma-separated list of numbers, received {text!r}")
        return numbers
    if len(numbers) != 3:
        raise DeconvError(f"expected START:STOP:STEP or a comma-separated list of numbers, received {text!r}")
    start, stop, step = numbers
    if step == 0 or (stop - start) / step < 0:
        raise DeconvError(f"the range {text!r} is empty: STEP must be nonzero and lead from START to STOP")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + i * step, 10) for i in range(count)]


def class_name(index: int | None, categories: Sequence[str] | None) -> str | None:
    """The name of class ``index`` among ``categories``, or None when there is none."""
    return categories[index] if index is not None and categories and 0 <= index < len(categories) else None
