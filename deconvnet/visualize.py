"""One unit, one image, one figure: what ``deconv visualize`` does, as a function."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from .engine import Deconvnet, Unit
from .errors import DeconvError
from .fileio import check_figure_path, save_figure_atomic
from .images import open_image
from .models import DEFAULT_MODEL, LoadedModel, class_index, load
from .receptive import Box
from .render import crop_with_padding, to_display, visualize_figure
from .rules import check_mode


@dataclass
class Visualization:
    output: Path
    model: str
    layer: str
    unit: Unit
    box: Box  # the unit's receptive field in input pixels (may run past the border)
    projection: Tensor  # (C, H, W), the full projection in the model's input space


def visualize(
    image: str | os.PathLike,
    output: str | os.PathLike,
    *,
    layer: str,
    channel: int | str,
    position: tuple[int, int] | None = None,
    mode: str = "deconvnet",
    model: str | LoadedModel = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    percentile: float | None = 99.5,
) -> Visualization:
    """Project ``channel`` of ``layer`` for ``image`` and save the figure to ``output``.

    The figure shows the input with the unit's receptive field outlined, the image
    patch under it, and the projection cropped to it. For a classifier's output layer
    ``channel`` may be a class name ("tabby").

    >>> visualize("assets/cat.jpg", "cat.png", layer="conv5_3", channel=12)  # doctest: +SKIP
    """
    check_mode(mode)
    if percentile is not None and not 0 < percentile <= 100:  # also NaN
        raise DeconvError(f"percentile must be in (0, 100], e.g. 99.5 (100 or None: no clipping); "
                          f"received {percentile}")
    output = Path(output)
    check_figure_path(output)  # fail before the work, not after it
    photo = open_image(image)  # a bad file is found before the model loads
    loaded = load(model, weights=weights) if isinstance(model, str) else model
    channel = class_index(channel, loaded.categories, loaded.name)
    x = loaded.transform(photo)[None]  # (1, 3, H, W)
    with Deconvnet(loaded.model) as dn:
        projection = dn.project_units(x, layer, [(0, channel, position)], mode=mode)
        unit = projection.units[0]
        box = dn.box(layer, unit.position, tuple(x.shape[-2:]))
        name = projection.layer.name + (f" ({projection.layer.alias})" if projection.layer.alias else "")
    picture = loaded.transform.to_uint8(x[0])
    cropped = crop_with_padding(loaded.transform.as_rgb(projection.maps[0]), tuple(box))
    where = f" at (y={unit.position[0]}, x={unit.position[1]})" if unit.position else ""
    figure = visualize_figure(
        picture, tuple(box), crop_with_padding(picture, tuple(box)), to_display(cropped, percentile=percentile),
        title=f"{loaded.name} {name}, channel {unit.channel}{_class_name(loaded, projection)}{where}",
        subtitle=f"activation {unit.value:.4g}, {mode} projection, receptive field {box.height}x{box.width}",
    )
    save_figure_atomic(output, figure)
    return Visualization(output, loaded.name, layer, unit, box, projection.maps[0])


def _class_name(loaded: LoadedModel, projection) -> str:
    """' (tabby)' when the projected layer is the classifier's output."""
    if loaded.categories and projection.layer.alias in ("logits", "fc8") and projection.units[0].position is None:
        return f" ({loaded.categories[projection.units[0].channel]})"
    return ""
