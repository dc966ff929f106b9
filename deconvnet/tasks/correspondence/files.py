"""``deconv correspondence`` as a function: image files and a JSON of part boxes in, Table 1 out.

Reads the part file and the images, maps the boxes into the model input, runs
``deconvnet.tasks.correspondence.compute`` and writes ``correspondence.json`` and the
figure (``deconvnet.tasks.correspondence.figure``).

>>> correspondence("dogs.json", "out", layers=["conv5_3"], images="photos/")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ...dataset.images import open_image
from ...engine.features import FeatureExtractor
from ...errors import DeconvError
from ...fileio import check_writable_dir, save_figure_atomic, write_json_atomic
from ...models import DEFAULT_MODEL, LoadedModel, resolve_model
from ...models.describe import mid_grey
from .compute import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_REPEATS,
    DEFAULT_SEED,
    CorrespondenceResult,
    correspondence_deltas,
    map_box,
)


def read_parts(path: str | os.PathLike) -> dict[str, dict[str, list[float]]]:
    """The part file: {"image name": {"part": [x0, y0, x1, y1], ...}, ...}, checked for its shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"part file not found: {path} (expected a JSON file "
                                f'{{"dog1.jpg": {{"left eye": [x0, y0, x1, y1], ...}}, ...}})')
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DeconvError(f"cannot read part file {path}: not valid JSON ({error})") from error
    example = '{"dog1.jpg": {"left eye": [x0, y0, x1, y1]}}'
    if not isinstance(data, dict) or not data:
        raise DeconvError(f"part file {path} must map image names to their parts, e.g. {example}")
    for image, parts in data.items():
        if not isinstance(parts, dict) or not parts:
            raise DeconvError(f"in {path}, image {image!r} must map part names to boxes, e.g. {example}")
        for part, box in parts.items():
            if (not isinstance(box, list) or len(box) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
                raise DeconvError(f"in {path}, box {part!r} of {image!r} must be four numbers [x0, y0, x1, y1] "
                                  f"in image pixels, received {box!r}")
    return data


@dataclass
class Correspondence:
    """What ``correspondence`` did: the files written, the model and the numbers."""

    figure: Path
    results: Path
    model: str
    images: list[str]
    result: CorrespondenceResult


def correspondence(
    parts: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    layers: Sequence[str],
    images: str | os.PathLike | None = None,
    model: str | LoadedModel = DEFAULT_MODEL, weights: str | os.PathLike | None = None,  # a name and its weights
    repeats: int = DEFAULT_REPEATS,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Correspondence:
    """Table 1 for the images and part boxes of the JSON file ``parts``; writes
    ``out_dir/correspondence.json`` and ``out_dir/correspondence.png``.

    Image names in ``parts`` are paths relative to ``images`` (default: the part file's
    folder). Boxes are [x0, y0, x1, y1] in the image's own pixels (x1, y1 exclusive), mapped
    into the model input as ``map_box`` describes; the occluder is mid-grey, as in ``deconv
    occlusion``.

    >>> correspondence("dogs.json", "out", layers=["conv5_3"], images="photos/")   # doctest: +SKIP
    """
    out = Path(out_dir)
    spec = read_parts(parts)
    root = Path(images) if images is not None else Path(parts).parent
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    missing = [name for name in spec if not (root / name).is_file()]
    if missing:
        present = sorted(p.name for p in root.iterdir() if p.is_file())[:5]
        raise DeconvError(f"{len(missing)} image(s) named in {parts} are not in {root}: "
                          f"{', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''} "
                          f"(names are relative to the image folder; it holds e.g. {', '.join(present) or 'nothing'})")
    if len(spec) < 2:
        raise DeconvError(f"correspondence compares images in pairs: {parts} names {len(spec)} image; "
                          f"give at least two")
    names = list(spec)
    photos = [open_image(root / name) for name in names]
    for name, photo in zip(names, photos):  # before loading the model: mistakes fail fast
        width, height = photo.size
        for part, (x0, y0, x1, y1) in spec[name].items():
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise DeconvError(f"box {part!r} of {name!r}, {spec[name][part]}, is outside the image "
                                  f"({width}x{height} pixels) or empty: expected 0 <= x0 < x1 <= {width} "
                                  f"and 0 <= y0 < y1 <= {height}")
    loaded = resolve_model(model, weights)
    boxes = []
    for name, photo in zip(names, photos):
        mapped = {}
        for part, box in spec[name].items():
            try:
                mapped[part] = map_box(box, photo.size, loaded.transform)
            except DeconvError as error:
                raise DeconvError(f"part {part!r} of {name!r}: {error}") from None
        boxes.append(mapped)
    pictures = [loaded.transform(photo) for photo in photos]
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check_writable_dir(existing)  # before the work; the folder itself is made once the work is done
    inputs = torch.stack(pictures)  # (N, 3, H, W)
    with FeatureExtractor(loaded.model) as dn:
        result = correspondence_deltas(dn, inputs, boxes, fill=mid_grey(loaded.transform), layers=layers,
                                       repeats=repeats, seed=seed, batch_size=batch_size, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    results = write_json_atomic(out / "correspondence.json", {
        "model": loaded.name, "weights_sha256": loaded.weights_sha256, "transform": loaded.transform.describe(),
        "images": names, "boxes": {n: {p: list(b) for p, b in bx.items()} for n, bx in zip(names, boxes)},
        "seconds": result.seconds, **result.as_dict()})
    from .figure import correspondence_figure  # matplotlib only once there is a figure to draw

    figure = correspondence_figure([loaded.transform.to_uint8(x) for x in inputs], names, boxes, result,
                                   title=f"{loaded.name}: part correspondence (Zeiler & Fergus Table 1)")
    figure_path = save_figure_atomic(out / "correspondence.png", figure)
    return Correspondence(figure_path, results, loaded.name, names, result)
