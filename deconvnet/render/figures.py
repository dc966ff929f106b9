"""Matplotlib figures of projections: the input with the receptive field, the patch and the projections.

The figures are built without pyplot on the Agg canvas (``new_figure``), so nothing global
changes and no display is needed; save one with ``fileio.save_figure_atomic``, or let
Jupyter show it (``NotebookFigure``). The numpy/PIL pictures they show come from
:mod:`deconvnet.render.pictures`. ``new_figure`` and ``outline_box`` are the one way the
tasks' figures start a figure and outline a box.

Example:
    >>> import numpy as np
    >>> img, patch = np.zeros((64, 64, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
    >>> fig = visualize_figure(img, (40, 50, 20, 20), patch, patch, title="conv2 channel 12")
    >>> [ax.get_title() for ax in fig.axes]
    ['input', 'image patch', 'projection']
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Rectangle

from .pictures import Box, UInt8Image, check_box, check_rgb, clip_box, projection_for_box, projection_pictures

if TYPE_CHECKING:
    from ..engine import Projection

__all__ = [
    "GRID_COLUMNS",
    "NotebookFigure",
    "channels_figure",
    "new_figure",
    "outline_box",
    "projection_figure",
    "show_picture",
    "visualize_figure",
]

PANEL_TITLES = ("input", "image patch", "projection")
_BOX_COLOUR = "red"


class NotebookFigure(Figure):
    """A matplotlib Figure that Jupyter shows inline as a PNG, without pyplot or ``%matplotlib``."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def new_figure(width: float, height: float, *, h_pad: float | None = None) -> NotebookFigure:
    """A ``width`` x ``height`` inch figure on the non-interactive Agg canvas, laid out by constrained layout.

    ``h_pad`` (inches) is the vertical padding around the axes (None: matplotlib's default).

    Example:
        >>> fig = new_figure(4.0, 3.0)
        >>> fig.get_size_inches().tolist(), type(fig.canvas).__name__
        ([4.0, 3.0], 'FigureCanvasAgg')
    """
    figure = NotebookFigure(figsize=(width, height), layout=ConstrainedLayoutEngine(h_pad=h_pad))
    FigureCanvasAgg(figure)  # attach the canvas: no display, no pyplot state
    return figure


def outline_box(ax: Axes, box: Sequence[float], *, colour: str = _BOX_COLOUR, linewidth: float = 1.5,
                margin: float = 0.0, clip_to: tuple[int, int] | None = None) -> None:
    """Outline ``box`` = (top, left, height, width) in pixels on an image drawn by ``ax.imshow``.

    ``margin`` pixels widen it on every side (a frame around a cell); ``clip_to`` = (height,
    width) draws only the part inside an image of that size (nothing when none is).

    Example:
        >>> fig = new_figure(2.0, 2.0)
        >>> ax = fig.subplots()
        >>> outline_box(ax, (2, 3, 4, 5))
        >>> ax.patches[0].get_xy(), ax.patches[0].get_width(), ax.patches[0].get_height()
        ((2.5, 1.5), 5.0, 4.0)
    """
    if clip_to is not None:
        clipped = clip_box(check_box([int(v) for v in box]), *clip_to)
        if clipped is None:
            return
        box = clipped
    top, left, height, width = box
    # imshow centres pixel (r, c) at (c, r), so pixel edges sit at +-0.5.
    ax.add_patch(Rectangle((left - margin - 0.5, top - margin - 0.5), width + 2 * margin, height + 2 * margin,
                           fill=False, edgecolor=colour, linewidth=linewidth))


def show_picture(ax: Axes, picture: UInt8Image, title: str | None = None, *, fontsize: float = 10) -> None:
    """Show ``picture`` on ``ax`` pixel for pixel (nearest neighbour, no blur), without ticks."""
    ax.imshow(picture, interpolation="nearest")
    if title is not None:
        ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def _titled_projections(
    projection: UInt8Image | Mapping[str, UInt8Image], image: UInt8Image, patch: UInt8Image, box: Box
) -> dict[str, UInt8Image]:
    """{panel title: picture cropped like the patch}; a lone array is titled 'projection'."""
    named = {PANEL_TITLES[2]: projection} if isinstance(projection, np.ndarray) else dict(projection)
    if not named:
        raise ValueError("expected at least one projection to show, received none")
    return {str(title): projection_for_box(check_rgb(picture, f"projection {title!r}"), image, patch, box)
            for title, picture in named.items()}


def visualize_figure(
    image: UInt8Image,
    box: Sequence[int],
    patch: UInt8Image,
    projection: UInt8Image | Mapping[str, UInt8Image],
    *,
    title: str,
    subtitle: str = "",
    note: str = "",
) -> NotebookFigure:
    """The input with the receptive field outlined, the patch, then one panel per projection.

    ``box`` = (top, left, height, width) is the unit's receptive field in input
    pixels; it may run past the border and is outlined clipped to the image.
    ``projection`` is one picture (titled "projection") or a mapping {panel title:
    picture}, e.g. one per ReLU rule; each is either cropped to the box (same shape
    as ``patch``) or the full display-ready projection (same shape as ``image``),
    which is then cropped here. ``note`` is a line under the panels. The Figure is
    built without pyplot on the Agg canvas, so no global state changes; save it
    with ``fileio.save_figure_atomic``, or let Jupyter show it.

    Example:
        >>> img, patch = np.zeros((64, 64, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
        >>> rules = {"deconvnet": patch, "guided": patch}
        >>> fig = visualize_figure(img, (40, 50, 20, 20), patch, rules, title="conv2 channel 12")
        >>> [ax.get_title() for ax in fig.axes]
        ['input', 'image patch', 'deconvnet', 'guided']
    """
    image = check_rgb(image, "image")
    patch = check_rgb(patch, "patch")
    checked_box = check_box(box)
    panels = _titled_projections(projection, image, patch, checked_box)
    if not all(isinstance(text, str) for text in (title, subtitle, note)):
        raise TypeError("title, subtitle and note must be strings")

    # h_pad (inches) keeps the panel titles off the figure's top edge
    fig = new_figure(3.0 * (2 + len(panels)), 3.6 + 0.3 * bool(note), h_pad=0.1)
    axes = fig.subplots(1, 2 + len(panels))
    for ax, picture, panel_title in zip(axes, (image, patch, *panels.values()), (*PANEL_TITLES[:2], *panels)):
        show_picture(ax, picture, panel_title)
    outline_box(axes[0], checked_box, clip_to=(image.shape[0], image.shape[1]))
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title)
    if note:
        fig.supxlabel(note, fontsize=9, wrap=True)
    return fig


#: At most this many channels side by side in a channel grid; more wrap to a new block.
GRID_COLUMNS = 8


def channels_figure(
    labels: Sequence[str],
    patches: Sequence[UInt8Image],
    projections: Mapping[str, Sequence[UInt8Image]],
    *,
    title: str,
    note: str = "",
) -> NotebookFigure:
    """Several units of one image: per unit a column with its patch above its projections.

    ``labels[i]`` heads the column of ``patches[i]`` (e.g. "channel 12\\n17.4");
    ``projections`` maps a row title (a ReLU rule) to one picture per unit. Crops of
    different units may differ in size (receptive fields clipped by a 1-D layer).
    Columns wrap every ``GRID_COLUMNS`` units.

    Example:
        >>> crop = np.zeros((9, 9, 3), np.uint8)
        >>> fig = channels_figure(["ch 3", "ch 1"], [crop, crop], {"guided": [crop, crop]}, title="conv1")
        >>> len(fig.axes), fig.axes[0].get_title(), fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()
        (4, 'ch 3', 'image patch', 'guided')
    """
    count = len(labels)
    if count == 0 or len(patches) != count or any(len(row) != count for row in projections.values()):
        raise ValueError(f"expected one label, one patch and one projection per rule for each unit; received "
                         f"{count} labels, {len(patches)} patches and "
                         f"{[len(row) for row in projections.values()]} projections")
    rows = {PANEL_TITLES[1]: list(patches), **{str(name): list(row) for name, row in projections.items()}}
    columns = min(count, GRID_COLUMNS)
    blocks = math.ceil(count / columns)
    fig = new_figure(1.0 + 1.6 * columns, 0.8 + 1.75 * len(rows) * blocks + 0.3 * bool(note), h_pad=0.1)
    axes = fig.subplots(len(rows) * blocks, columns, squeeze=False)
    for block in range(blocks):
        for row, (row_title, pictures) in enumerate(rows.items()):
            for column in range(columns):
                ax, index = axes[block * len(rows) + row, column], block * columns + column
                if index >= count:
                    ax.set_axis_off()
                    continue
                picture = check_rgb(pictures[index], f"{row_title}[{index}]")
                show_picture(ax, picture, labels[index] if row == 0 else None)
                if column == 0:
                    ax.set_ylabel(row_title, fontsize=10)
    fig.suptitle(title)
    if note:
        fig.supxlabel(note, fontsize=9, wrap=True)
    return fig


def _unit_label(projection: Projection, unit: Any) -> str:
    layer = projection.layer
    name = (layer.alias or layer.name) if layer is not None else "unit"
    where = f" at {tuple(unit.position)}" if unit.position is not None else ""
    return f"{name} channel {unit.channel}{where}\nactivation {unit.value:.4g}"


def projection_figure(
    projection: Projection, *, transform: Any = None, percentile: float | None = 99.5
) -> NotebookFigure:
    """All maps of a projection in one figure, each titled by its unit; Jupyter shows it inline.

    ``Projection.show`` calls this.

    Example:
        >>> import torch
        >>> from deconvnet.engine import Projection, Unit
        >>> p = Projection(torch.randn(1, 3, 8, 8), [Unit(0, 5, (2, 3), 4.5)], None)
        >>> projection_figure(p).axes[0].get_title()
        'unit channel 5 at (2, 3)\\nactivation 4.5'
    """
    pictures = projection_pictures(projection, transform, percentile, None)
    fig = new_figure(3.0 * len(pictures), 3.4, h_pad=0.1)
    for ax, picture, unit in zip(np.atleast_1d(fig.subplots(1, len(pictures))), pictures, projection.units):
        show_picture(ax, picture, _unit_label(projection, unit))
    return fig

