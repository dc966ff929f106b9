"""One image, one layer, one figure: what ``deconv visualize`` does, as a function.

Zeiler & Fergus (ECCV 2014) project a unit with the deconvnet; guided backpropagation
(Springenberg et al. 2015) differs only at the ReLU. On a deep layer the two look very
different, so by default the figure shows both, titled by rule, with a note on why.
Without a channel, the layer's channels are ranked by their strongest activation on the
image and the top ones are drawn as a grid.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from ..dataset.images import open_image
from ..engine import Deconvnet, Unit
from ..engine.receptive import Box
from ..engine.relu import MODES, check_mode
from ..engine.validate import check_image
from ..errors import DeconvError
from ..fileio import check_figure_path, save_figure_atomic
from ..models import DEFAULT_MODEL, LoadedModel, class_index, load

if TYPE_CHECKING:
    from ..render import NotebookFigure

DEFAULT_MODES = ("deconvnet", "guided")
DEFAULT_TOP = 8

RULE_TITLES = {"deconvnet": "deconvnet (Zeiler & Fergus)", "guided": "guided backpropagation",
               "backprop": "gradient (backprop)"}
ROW_TITLES = {"deconvnet": "deconvnet", "guided": "guided", "backprop": "gradient"}  # narrow, for the grid
# What each rule does at a ReLU on the way down; joined into the note under the figure.
_MASKS = "the forward ReLU masks"
RULE_NOTES = {
    "deconvnet": f"the deconvnet ignores {_MASKS} (it only rectifies)",
    "guided": f"guided backpropagation applies {_MASKS} and rectifies",
    "backprop": f"the gradient applies {_MASKS} without rectifying",
}


@dataclass
class Visualization:
    """What ``visualize`` computed and drew. In Jupyter it displays as its figure."""

    output: Path | None  # None: nothing was written
    model: str
    layer: str
    units: list[Unit]  # strongest first when the channels were ranked
    boxes: list[Box]  # each unit's receptive field in input pixels (may run past the border)
    # rule -> (len(units), C, H, W), full projections in the model's input space
    projections: dict[str, Tensor] = field(repr=False)
    figure: NotebookFigure = field(repr=False)
    ranked: bool  # the channels were chosen by their activation on the image
    classes: list[str] = field(default_factory=list)  # per unit its class name at a classifier's output, else ""

    @property
    def unit(self) -> Unit:
        """The first (or only) unit."""
        return self.units[0]

    @property
    def box(self) -> Box:
        return self.boxes[0]

    @property
    def projection(self) -> Tensor:
        """The first unit's map under the first rule, (C, H, W)."""
        return next(iter(self.projections.values()))[0]

    def _repr_png_(self) -> bytes:
        return self.figure._repr_png_()


def rule_note(modes: Sequence[str]) -> str:
    """One line on what the shown rules do at a ReLU (the note under the figure).

    >>> rule_note(["deconvnet", "guided"])[:66]
    'Why they differ: the deconvnet ignores the forward ReLU masks (it '
    >>> rule_note(["guided"])
    'Guided backpropagation applies the forward ReLU masks and rectifies.'
    """
    clauses = [RULE_NOTES[mode] if i == 0 else RULE_NOTES[mode].replace(_MASKS, "them") for i, mode in enumerate(modes)]
    text = "; ".join(clauses) + "."
    return "Why they differ: " + text if len(modes) > 1 else text[0].upper() + text[1:]


def strongest_channels(dn: Deconvnet, x: Tensor, layer: str, top: int = DEFAULT_TOP, *, image: int = 0) -> list[Unit]:
    """The ``top`` channels of ``layer`` that fire most on image ``image`` of ``x``, strongest first.

    A channel's score is its strongest activation anywhere on the map, and its Unit is
    that activation (the first maximum in row-major order). Ties keep channel order.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    >>> with Deconvnet(net) as dn:
    ...     units = strongest_channels(dn, torch.rand(1, 3, 16, 16), "0", top=3)
    >>> len(units), units[0].value >= units[1].value >= units[2].value
    (3, True)
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise DeconvError(f"top must be a whole number of channels, at least 1; received {top!r}")
    image = check_image(image, x.shape[0])
    activation = dn.activations(x[image:image + 1], [layer])[layer][0]  # (C, H, W) or (C,)
    if activation.dim() not in (1, 3):
        raise DeconvError(f"layer {layer} outputs shape (N, {', '.join(map(str, activation.shape))}); "
                          "channels can be ranked only for (N, C) or (N, C, H, W)")
    flat = activation.reshape(activation.shape[0], -1).float()  # (C, H*W)
    values, where = flat.max(dim=1)  # the first maximum of each channel
    order = values.sort(descending=True, stable=True).indices[:top]
    width = activation.shape[-1]
    return [Unit(image, int(c), None if activation.dim() == 1 else divmod(int(where[c]), width), float(values[c]))
            for c in order]


def visualize(
    image: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    layer: str,
    channel: int | str | Sequence[int | str] | None = None,
    position: tuple[int, int] | None = None,
    mode: str | Sequence[str] | None = None,
    top: int = DEFAULT_TOP,
    model: str | LoadedModel = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    percentile: float | None = 99.5,
) -> Visualization:
    """Project units of ``layer`` for ``image``, draw the figure, and save it to ``output`` if given.

    One channel: the input with the unit's receptive field outlined, the image patch,
    and the projection cropped to the field under each rule in ``mode`` (default: the
    deconvnet and guided backpropagation, side by side, with a note on why they
    differ). A list of channels, or None for the ``top`` channels with the strongest
    activation on this image: a grid, per channel its patch and projections. One
    forward pass per rule serves all the channels. At a classifier's output layer a
    channel may be a class name ("tabby"). In Jupyter the result displays as the figure.

    >>> visualize("assets/cat.jpg", "cat.png", layer="conv5_3", channel=12)  # doctest: +SKIP
    >>> visualize("assets/cat.jpg", layer="conv5_3", mode="guided")          # doctest: +SKIP
    """
    modes = _modes(mode)
    if percentile is not None and not 0 < percentile <= 100:  # also NaN
        raise DeconvError(f"percentile must be in (0, 100], e.g. 99.5 (100 or None: no clipping); "
                          f"received {percentile}")
    if output is not None:
        output = Path(output)
        check_figure_path(output)  # fail before the work, not after it
    photo = open_image(image)  # a bad file is found before the model loads
    loaded = load(model, weights=weights) if isinstance(model, str) else model
    channels = None if channel is None else [class_index(one, loaded.categories, loaded.name)
                                             for one in _channel_list(channel)]
    if channels is not None and not channels:
        raise DeconvError("expected at least one channel, received an empty list (omit it to rank the channels)")
    if position is not None and (channels is None or len(channels) > 1):
        raise DeconvError("a position picks one unit: give it with a single channel")
    x = loaded.transform(photo)[None]  # (1, 3, H, W)
    with Deconvnet(loaded.model) as dn:
        if channels is None:
            requests = [(0, unit.channel, unit.position) for unit in strongest_channels(dn, x, layer, top)]
        else:
            requests = [(0, one, position) for one in channels]
        maps = {}
        for rule in modes:
            projection = dn.project_units(x, layer, requests, mode=rule)
            # The next rule projects the very units this one chose.
            requests = [(0, unit.channel, unit.position) for unit in projection.units]
            maps[rule] = projection.maps
        boxes = [dn.box(layer, unit.position, (x.shape[-2], x.shape[-1])) for unit in projection.units]
        name = projection.layer.name + (f" ({projection.layer.alias})" if projection.layer.alias else "")
        is_output = projection.layer.alias in ("logits", "fc8")
    units = projection.units
    labels = [loaded.categories[unit.channel] if loaded.categories and is_output and unit.position is None else ""
              for unit in units]
    if channels is not None and len(channels) == 1:
        figure = _single(loaded, x, name, units[0], boxes[0], maps, labels[0], percentile)
    else:
        chosen = (f"the {len(units)} channels that fire most" if channels is None
                  else "channels " + ", ".join(str(unit.channel) for unit in units))
        figure = _grid(loaded, x, f"{loaded.name} {name} on {Path(image).name}: {chosen}", units, boxes, maps,
                       labels, percentile)
    if output is not None:
        save_figure_atomic(output, figure, close=False)
    return Visualization(output, loaded.name, layer, units, boxes, maps, figure, channels is None, labels)


def _channel_list(channel: int | str | Sequence[int | str]) -> list[int | str]:
    """One channel or several as a list of ints and class names (numpy and torch integers too)."""
    if isinstance(channel, str) or getattr(channel, "ndim", 0) == 0 and hasattr(channel, "__index__"):
        channel = [channel]  # type: ignore[list-item]
    try:
        return [one if isinstance(one, str) else operator.index(one) for one in channel]  # type: ignore[union-attr]
    except TypeError:
        raise DeconvError(f"expected a channel index, a class name or a list of them, received {channel!r}") from None


def _modes(mode: str | Sequence[str] | None) -> list[str]:
    modes = list(DEFAULT_MODES if mode is None else [mode] if isinstance(mode, str) else mode)
    for one in modes:
        check_mode(one)
    if not modes or len(set(modes)) != len(modes):
        raise DeconvError(f"expected one or more different modes of {', '.join(MODES)}; received {modes}")
    return [one for one in MODES if one in modes]  # always in the same order


def _crops(loaded: LoadedModel, x: Tensor, boxes: list[Box], maps: dict[str, Tensor], percentile: float | None):
    """Per unit the image patch, and per rule its display-ready projections, cropped to the fields."""
    from ..render import crop_with_padding, to_display

    picture = loaded.transform.to_uint8(x[0])  # (H, W, 3)
    patches = [crop_with_padding(picture, tuple(box)) for box in boxes]
    shown = {rule: [to_display(crop_with_padding(loaded.transform.as_rgb(one), tuple(box)), percentile=percentile)
                    for one, box in zip(rule_maps, boxes)] for rule, rule_maps in maps.items()}
    return picture, patches, shown


def _single(loaded: LoadedModel, x: Tensor, name: str, unit: Unit, box: Box, maps: dict[str, Tensor], label: str,
            percentile: float | None) -> NotebookFigure:
    from ..render import visualize_figure

    picture, patches, shown = _crops(loaded, x, [box], maps, percentile)
    where = f" at (y={unit.position[0]}, x={unit.position[1]})" if unit.position else ""
    rules = f", {next(iter(maps))} projection" if len(maps) == 1 else ""
    return visualize_figure(
        picture, tuple(box), patches[0], {RULE_TITLES[rule]: crops[0] for rule, crops in shown.items()},
        title=f"{loaded.name} {name}, channel {unit.channel}{f' ({label})' if label else ''}{where}",
        subtitle=f"activation {unit.value:.4g}{rules}, receptive field {box.height}x{box.width}",
        note=rule_note(list(maps)),
    )


def _grid(loaded: LoadedModel, x: Tensor, title: str, units: list[Unit], boxes: list[Box],
          maps: dict[str, Tensor], labels: list[str], percentile: float | None) -> NotebookFigure:
    from ..render import channels_figure

    _, patches, shown = _crops(loaded, x, boxes, maps, percentile)
    return channels_figure(
        [f"channel {unit.channel}{f' {label}' if label else ''}\n{unit.value:.4g}"
         for unit, label in zip(units, labels)],
        patches, {ROW_TITLES[rule]: crops for rule, crops in shown.items()}, title=title, note=rule_note(list(maps)),
    )
