"""The figures of ``visualize``: one unit under each rule, or a grid of channels (see deconvnet.render.figures).

>>> figure = single_figure(loaded, x, "conv5_3", unit, box, maps, "", 99.5)   # doctest: +SKIP
"""

from __future__ import annotations

from torch import Tensor

from ...engine import Unit
from ...engine.receptive import Box
from ...models import LoadedModel
from ...render.figures import NotebookFigure, channels_figure, visualize_figure
from ...render.pictures import crop_with_padding, to_display
from .compute import ROW_TITLES, RULE_TITLES, rule_note


def display_crops(loaded: LoadedModel, x: Tensor, boxes: list[Box], maps: dict[str, Tensor], percentile: float | None):
    """The input picture; per unit its patch, and per rule its display-ready projections, cropped to the fields."""
    picture = loaded.transform.to_uint8(x[0])  # (H, W, 3)
    patches = [crop_with_padding(picture, tuple(box)) for box in boxes]
    shown = {rule: [to_display(crop_with_padding(loaded.transform.as_rgb(one), tuple(box)), percentile=percentile)
                    for one, box in zip(rule_maps, boxes)] for rule, rule_maps in maps.items()}
    return picture, patches, shown


def single_figure(loaded: LoadedModel, x: Tensor, name: str, unit: Unit, box: Box, maps: dict[str, Tensor], label: str,
            percentile: float | None) -> NotebookFigure:
    picture, patches, shown = display_crops(loaded, x, [box], maps, percentile)
    where = f" at (y={unit.position[0]}, x={unit.position[1]})" if unit.position else ""
    rules = f", {next(iter(maps))} projection" if len(maps) == 1 else ""
    return visualize_figure(
        picture, tuple(box), patches[0], {RULE_TITLES[rule]: crops[0] for rule, crops in shown.items()},
        title=f"{loaded.name} {name}, channel {unit.channel}{f' ({label})' if label else ''}{where}",
        subtitle=f"activation {unit.value:.4g}{rules}, receptive field {box.height}x{box.width}",
        note=rule_note(list(maps)),
    )


def grid_figure(loaded: LoadedModel, x: Tensor, title: str, units: list[Unit], boxes: list[Box],
          maps: dict[str, Tensor], labels: list[str], percentile: float | None) -> NotebookFigure:
    _, patches, shown = display_crops(loaded, x, boxes, maps, percentile)
    return channels_figure(
        [f"channel {unit.channel}{f' {label}' if label else ''}\n{unit.value:.4g}"
         for unit, label in zip(units, labels)],
        patches, {ROW_TITLES[rule]: crops for rule, crops in shown.items()}, title=title, note=rule_note(list(maps)),
    )
