"""``deconv invariance`` as a function: image files in, the figure, a JSON and a CSV of the curves out.

The curves come from ``deconvnet.tasks.invariance.compute``, the figure from
``deconvnet.tasks.invariance.figure``; this module reads the images and writes the files.

>>> invariance(["assets/cat.jpg"], "cat_inv.png", model="efficientnet-lite0",
...            target_class="tabby")                                           # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ...dataset.images import open_image
from ...dataset.imageset import read_entries
from ...errors import DeconvError
from ...fileio import check_figure_path, save_figure_atomic, write_json_atomic, write_text_atomic
from ...models import DEFAULT_MODEL, LoadedModel, class_index, resolve_model
from .compute import (
    DEFAULT_GRIDS,
    TRANSFORMS,
    ImageCurves,
    LayerReader,
    check_grid,
    class_name,
    default_layers,
    invariance_curves,
    model_picture,
)


@dataclass
class InvarianceReport:
    """What ``invariance`` wrote, and the curves."""

    figure: Path
    json: Path
    csv: Path
    curves: list[ImageCurves]
    model: str
    seconds: float


def read_image_list(path: str | os.PathLike) -> list[tuple[Path, str | None]]:
    """Lines ``path`` or ``path<TAB>class`` (a name or index); relative paths are from the file's folder."""
    path = Path(path)
    rows = read_entries(path)  # the package's one reading of a list file
    if not rows:
        raise DeconvError(f"the list file {path} names no images (one path per line, optionally TAB and a class)")
    return rows


def _resolve_class(label: int | str | None, loaded: LoadedModel) -> int | None:
    if label is None or isinstance(label, int):
        return label
    if label.strip().lstrip("-").isdigit():
        return int(label)
    try:
        return class_index(label, loaded.categories, loaded.name)
    except DeconvError:
        if "_" in label:  # ImageNet folder names spell 'lawn_mower'
            return class_index(label.replace("_", " "), loaded.categories, loaded.name)
        raise


def invariance(
    images: Sequence[str | os.PathLike | tuple[str | os.PathLike, int | str | None]],
    output: str | os.PathLike,
    *,
    model: str | LoadedModel = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    layers: Sequence[str] | None = None,
    target_class: int | str | None = None,
    grids: Mapping[str, Sequence[float]] = DEFAULT_GRIDS,
    progress: bool = True,
) -> InvarianceReport:
    """The paper's Fig. 5 for ``images``: write the figure, a JSON and a CSV beside it.

    ``images`` are paths, or (path, class) pairs; ``target_class`` (a name or index) is
    the class of every image without its own. ``layers`` default to an early and a late
    layer (``default_layers``). The JSON (``fig.png`` -> ``fig.json``) holds every curve;
    the CSV (``fig.csv``) has one row per image, transformation, parameter and layer.

    >>> invariance(["assets/cat.jpg"], "cat_inv.png", model="efficientnet-lite0",
    ...            target_class="tabby")                                           # doctest: +SKIP
    """
    started = time.perf_counter()
    figure_path = check_figure_path(output)
    entries = [(Path(item[0]), item[1]) if isinstance(item, tuple) else (Path(item), None) for item in images]
    if not entries:
        raise DeconvError("no images given")
    for kind in grids:
        if kind not in TRANSFORMS:
            raise DeconvError(f"unknown transformation {kind!r}: expected one of {', '.join(TRANSFORMS)}")
    loaded = resolve_model(model, weights)
    pictures = [open_image(path) for path, _ in entries]  # every unreadable file is reported before any work
    for (path, _), picture in zip(entries, pictures):
        resized, crop = model_picture(picture, loaded.transform)
        for kind, values in grids.items():
            try:
                check_grid(kind, [float(v) for v in values], tuple(resized.shape[1:]), crop)
            except DeconvError as error:
                raise DeconvError(f"{path.name}: {error}") from None
    classes = [_resolve_class(label if label is not None else target_class, loaded) for _, label in entries]
    layer_names = list(layers) if layers else list(default_layers(loaded.model, loaded.transform.input_size))
    if len(layer_names) < 1:
        raise DeconvError("give at least one layer")
    reader = LayerReader(loaded.model, layer_names, loaded.transform.input_size)
    if any(label is not None for label in classes):  # refuse a class for a model without class scores now
        with torch.inference_mode():
            probe = loaded.model(torch.zeros(1, 3, *loaded.transform.input_size))
        if not (isinstance(probe, Tensor) and probe.dim() == 2 and probe.shape[1] > 1):
            reader.close()
            shape = tuple(probe.shape) if isinstance(probe, Tensor) else type(probe).__name__
            raise DeconvError(f"a class probability needs a classifier whose output is (N, classes); "
                              f"{loaded.name} returns {shape}. Leave out the class, or use a classifier such as "
                              f"efficientnet-lite0")
    curves = []
    try:
        for (path, _), picture, label in tqdm(list(zip(entries, pictures, classes)), desc="invariance", unit="image",
                                              disable=not progress, leave=False):
            curves.append(invariance_curves(reader, loaded.transform, picture, layer_names, grids,
                                            target_class=label, name=path.name))
    finally:
        reader.close()
    json_path, csv_path = figure_path.with_suffix(".json"), figure_path.with_suffix(".csv")
    categories = loaded.categories
    write_json_atomic(json_path, _record(loaded, curves, categories))
    write_text_atomic(csv_path, curves_csv(curves, categories))
    published = isinstance(model, str) and weights is None
    from .figure import invariance_figure, invariance_title  # matplotlib only once there is a figure to draw

    figure = invariance_figure(curves, title=invariance_title(loaded, curves, published), categories=categories)
    save_figure_atomic(figure_path, figure)
    return InvarianceReport(figure_path, json_path, csv_path, curves, loaded.name, time.perf_counter() - started)


def _record(loaded: LoadedModel, curves: list[ImageCurves], categories) -> dict:
    return {
        "model": loaded.name, "weights": loaded.weights, "transform": loaded.transform.describe(),
        "layers": curves[0].layers,
        "conventions": {"translation": "model input pixels; positive moves the content down (the crop window up)",
                        "scale": "zoom about the centre (the crop window shrinks by 1/scale)",
                        "rotation": "degrees, counter-clockwise about the centre, same crop",
                        "outside": "mid-grey (128) where the window leaves the resized picture",
                        "distance": "Euclidean distance between flattened features of original and transformed",
                        "relative_distance": "distance / ||features of the original||"},
        "images": [{
            "image": c.image, "class": c.target_class, "class_name": class_name(c.target_class, categories),
            "probability": c.baseline_probability, "norms": c.norms, "seconds": round(c.seconds, 3),
            "transforms": {kind: {
                "parameters": values,
                "distance": {layer: c.distance[kind][layer].tolist() for layer in c.layers},
                "relative_distance": {layer: _finite(c.relative[kind][layer]) for layer in c.layers},
                "probability": None if c.probability is None else c.probability[kind].tolist(),
            } for kind, values in c.grids.items()},
        } for c in curves],
    }


def _finite(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def curves_csv(curves: Sequence[ImageCurves], categories: Sequence[str] | None = None) -> str:
    """One row per image, transformation, parameter and layer."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "transform", "parameter", "layer", "distance", "relative_distance", "class",
                     "class_name", "class_probability"])
    for c in curves:
        name = class_name(c.target_class, categories) or ""
        for kind, values in c.grids.items():
            for i, value in enumerate(values):
                p = "" if c.probability is None else f"{c.probability[kind][i]:.6g}"
                for layer in c.layers:
                    writer.writerow([c.image, kind, f"{value:g}", layer, f"{c.distance[kind][layer][i]:.6g}",
                                     f"{c.relative[kind][layer][i]:.6g}", "" if c.target_class is None
                                     else c.target_class, name, p])
    return buffer.getvalue()
