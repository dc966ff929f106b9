"""``deconv sanity`` as a function: image files in, figures and JSON out (see deconvnet.tasks.sanity.compute).

>>> report = sanity(["assets/cat.jpg"], "out", layer="relu5_3", channel=12)   # doctest: +SKIP
>>> print("\\n".join(report.result.summary()))                                # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ...dataset.images import UnreadableImage, open_image
from ...dataset.imageset import expand
from ...engine.relu import MODES
from ...engine.validate import check_integer
from ...errors import DeconvError
from ...fileio import check_writable_dir, save_figure_atomic, write_json_atomic
from ...models import DEFAULT_MODEL, LoadedModel, class_index, resolve_model
from .compute import DEFAULT_BATCH_SIZE, TOP1, SanityResult, sanity_check
from .similarity import require_analysis

DEFAULT_LIMIT = 16


@dataclass
class SanityReport:
    result: SanityResult
    outputs: list[Path]  # the figures and the JSON written
    skipped: list[tuple[str, str]]  # (path, reason) of files that could not be read


def sanity(
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    layer: str,
    channel: int | str,
    model: str | LoadedModel = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    modes: Sequence[str] = MODES,
    grouping: str = "auto",
    seed: int = 0,
    limit: int | None = DEFAULT_LIMIT,
    batch_size: int = DEFAULT_BATCH_SIZE,
    independently: bool = True,
    progress: bool = True,
) -> SanityReport:
    """Run the sanity checks on image files (or folders, or list files) and write
    ``randomization.png``, ``curves.png``, ``selectivity.png`` and ``sanity.json`` to ``out_dir``.

    ``channel`` may be a class name or ``"top1"`` for a classifier's ``logits``. ``limit``
    keeps the first N images (None: all).
    """
    require_analysis()
    out = Path(out_dir)
    if not out.exists() and out.parent.is_dir():
        out.mkdir()  # like top9: a missing output folder is created (its parent must exist)
    out = check_writable_dir(out)  # fail before the work, not after it
    if limit is not None:
        limit = check_integer(limit, "limit", minimum=1, meaning="how many images to use")
    paths = expand(images)
    if not paths:
        raise DeconvError(f"no images found in {', '.join(map(str, images))}")
    loaded = resolve_model(model, weights)
    target_name = None
    if isinstance(channel, str) and channel != TOP1:
        channel = class_index(channel, loaded.categories, loaded.name)
        target_name = loaded.categories[channel] if loaded.categories else None
    tensors: list[torch.Tensor] = []
    names: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        if limit is not None and len(tensors) >= limit:
            break
        try:
            tensors.append(loaded.transform(open_image(path)))
            names.append(str(path))
        except UnreadableImage as error:
            skipped.append((str(path), str(error)))
            if progress:
                print(f"deconv: warning: skipped {error}", file=sys.stderr)
    if not tensors:
        raise DeconvError(f"none of the {len(paths)} files could be read as an image")
    sizes = {tuple(t.shape) for t in tensors}
    if len(sizes) > 1:
        raise DeconvError(f"the model's transform gave images of different sizes {sorted(sizes)}; "
                          f"the sanity check batches them, so they need one size")
    x = torch.stack(tensors)  # (N, 3, H, W)
    result = sanity_check(loaded.model, x, layer=layer, channel=channel, modes=modes, grouping=grouping, seed=seed,
                          batch_size=batch_size, images=names, independently=independently, progress=progress)
    result.model, result.target_name = loaded.name, target_name
    picture = loaded.transform.to_uint8(x[result.example])

    from .figure import curves_figure, randomization_figure, selectivity_figure

    outputs = [
        save_figure_atomic(out / "randomization.png", randomization_figure(picture, result)),
        save_figure_atomic(out / "curves.png", curves_figure(result)),
        save_figure_atomic(out / "selectivity.png", selectivity_figure(picture, result)),
        write_json_atomic(out / "sanity.json", result.to_json()),
    ]
    return SanityReport(result, outputs, skipped)
