"""``deconv visualize`` as a function: an image file in, the figure drawn (and written when asked).

The projections come from ``deconvnet.tasks.visualize.compute``, the figure from
``deconvnet.tasks.visualize.figure``.

>>> visualize("assets/cat.jpg", "cat.png", layer="conv5_3", channel=12)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from ...channels import ClassChannels, Strongest
from ...dataset.images import open_image
from ...engine import Unit
from ...engine.receptive import Box
from ...engine.validate import check_percentile
from ...errors import DeconvError
from ...fileio import check_figure_path, save_figure_atomic
from ...models import DEFAULT_MODEL, LoadedModel, class_index, resolve_model
from .compute import DEFAULT_TOP, channel_list, check_modes, project_rules

if TYPE_CHECKING:
    from ...render.figures import NotebookFigure


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


def visualize(
    image: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    layer: str,
    channel: int | str | Sequence[int | str] | Strongest | ClassChannels | None = None,
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
    channel may be a class name ("tabby"). The selectors of :mod:`deconvnet.channels` work
    too: ``Strongest(8)`` is ``top=8``, ``ClassChannels("tabby")`` the class names.
    In Jupyter the result displays as the figure.

    >>> visualize("assets/cat.jpg", "cat.png", layer="conv5_3", channel=12)  # doctest: +SKIP
    >>> visualize("assets/cat.jpg", layer="conv5_3", mode="guided")          # doctest: +SKIP
    """
    modes = check_modes(mode)
    if isinstance(channel, Strongest):
        top, channel = channel.k, None
    elif isinstance(channel, ClassChannels):
        channel = list(channel.names)
    percentile = check_percentile(percentile)
    if output is not None:
        output = Path(output)
        check_figure_path(output)  # fail before the work, not after it
    photo = open_image(image)  # a bad file is found before the model loads
    loaded = resolve_model(model, weights)
    channels = None if channel is None else [class_index(one, loaded.categories, loaded.name)
                                             for one in channel_list(channel)]
    if channels is not None and not channels:
        raise DeconvError("expected at least one channel, received an empty list (omit it to rank the channels)")
    if position is not None and (channels is None or len(channels) > 1):
        raise DeconvError("a position picks one unit: give it with a single channel")
    x = loaded.transform(photo)[None]  # (1, 3, H, W)
    done = project_rules(loaded.model, x, layer, channels, position=position, modes=modes, top=top)
    units, boxes, maps, name = done.units, done.boxes, done.maps, done.layer
    labels = [loaded.categories[unit.channel] if loaded.categories and done.is_output and unit.position is None else ""
              for unit in units]

    from .figure import grid_figure, single_figure  # matplotlib only once there is a figure to draw

    if channels is not None and len(channels) == 1:
        figure = single_figure(loaded, x, name, units[0], boxes[0], maps, labels[0], percentile)
    else:
        chosen = (f"the {len(units)} channels that fire most" if channels is None
                  else "channels " + ", ".join(str(unit.channel) for unit in units))
        figure = grid_figure(loaded, x, f"{loaded.name} {name} on {Path(image).name}: {chosen}", units, boxes, maps,
                             labels, percentile)
    if output is not None:
        save_figure_atomic(output, figure, close=False)
    return Visualization(output, loaded.name, layer, units, boxes, maps, figure, channels is None, labels)
