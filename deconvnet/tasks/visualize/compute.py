"""One image, one layer, one figure: what ``deconv visualize`` does, as a function.

Zeiler & Fergus (ECCV 2014) project a unit with the deconvnet; guided backpropagation
(Springenberg et al. 2015) differs only at the ReLU. On a deep layer the two look very
different, so by default the figure shows both, titled by rule, with a note on why.
Without a channel, the layer's channels are ranked by their strongest activation on the
image and the top ones are drawn as a grid.

This module computes: the ranking (``strongest_channels``) and the projections of the
chosen units under each rule (``project_rules``); it draws and writes nothing.
``deconvnet.tasks.visualize.files.visualize`` is the function ``deconv visualize`` calls,
``deconvnet.tasks.visualize.figure`` draws.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from ...engine import Deconvnet, Unit
from ...engine.receptive import Box
from ...engine.relu import MODES, check_mode
from ...engine.validate import check_image, check_integer
from ...errors import DeconvError

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
    top = check_integer(top, "top", minimum=1, meaning="how many channels to rank")
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


def channel_list(channel: int | str | Sequence[int | str]) -> list[int | str]:
    """One channel or several as a list of ints and class names (numpy and torch integers too)."""
    if isinstance(channel, str) or getattr(channel, "ndim", 0) == 0 and hasattr(channel, "__index__"):
        channel = [channel]  # type: ignore[list-item]
    try:
        return [one if isinstance(one, str) else operator.index(one) for one in channel]  # type: ignore[union-attr]
    except TypeError:
        raise DeconvError(f"expected a channel index, a class name or a list of them, received {channel!r}") from None


def check_modes(mode: str | Sequence[str] | None) -> list[str]:
    modes = list(DEFAULT_MODES if mode is None else [mode] if isinstance(mode, str) else mode)
    for one in modes:
        check_mode(one)
    if not modes or len(set(modes)) != len(modes):
        raise DeconvError(f"expected one or more different modes of {', '.join(MODES)}; received {modes}")
    return [one for one in MODES if one in modes]  # always in the same order


@dataclass
class RuleProjections:
    """The units of one layer projected under each rule: what a visualization shows."""

    units: list[Unit]  # strongest first when the channels were ranked
    boxes: list[Box]  # each unit's receptive field in input pixels (may run past the border)
    maps: dict[str, Tensor]  # rule -> (len(units), C, H, W), full projections in the model's input space
    layer: str  # the layer's name with its alias, for titles: "features.28 (conv5_3)"
    is_output: bool  # the layer is a classifier's output, so a channel is a class


def project_rules(model: nn.Module, x: Tensor, layer: str, channels: Sequence[int] | None, *,
                  position: tuple[int, int] | None = None, modes: Sequence[str] = DEFAULT_MODES,
                  top: int = DEFAULT_TOP) -> RuleProjections:
    """Project ``channels`` of ``layer`` (None: the ``top`` strongest on ``x``) under each rule of ``modes``.

    ``x`` is one model input (1, C, H, W). One pass per rule serves all the channels, and
    every rule projects the very units the first one chose (a channel's strongest unit, or
    the unit at ``position``).

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    >>> done = project_rules(net, torch.rand(1, 3, 16, 16), "1", [2, 5], modes=["deconvnet", "guided"])
    >>> [unit.channel for unit in done.units], sorted(done.maps), tuple(done.maps["guided"].shape)
    ([2, 5], ['deconvnet', 'guided'], (2, 3, 16, 16))
    """
    with Deconvnet(model) as dn:
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
    return RuleProjections(projection.units, boxes, maps, name, is_output)
