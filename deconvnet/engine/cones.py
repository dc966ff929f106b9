"""Cone-restricted backward passes: each row's signal is carried over its unit's cone only.

The signal going down from one unit is zero outside the unit's cone: the part of each
layer's map that the unit depends on (its receptive field at that layer: 1 position at
VGG16's conv5_3, 3x3 at conv5_2, 40x40 at conv3_3...). So each row of a backward pass is
kept as a tensor over the bounding box of that cone, with the box's place in the full map,
and the transposed convolutions, unpoolings, rectifications, scalings, sums, splits and
unpaddings run on the box alone. The boxes are planned before the pass from the registry's
field kinds and the operations' windows (receptive.py), never by scanning for non-zeros.

Where the registry cannot bound the support (FieldKind.WHOLE: fully connected layers,
flatten, adaptive pooling, any operation it does not list) the signal is the whole map from
there down, as in the full pass. Exact adjoints (steps.Adjoint: average pooling, products,
gates, ...) run on the whole map at their recorded inputs and their result is cut back to
the box the plan gives their input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from .graph import LayerGraph
from .operations import FieldKind
from .receptive import Box, ReceptiveField, node_window, union_fields, window_geometry
from .recorder import Record
from .relu import ReluRule
from .steps import ChannelScale, Mirror, Passthrough, Rectify, Split, Sum, TransposedConv2d, Unpad, Unpool2d

UNIT_CONE = ReceptiveField((1, 1), (1, 1), (0, 0))  # a unit of the target reads itself


@dataclass
class Boxed:
    """A signal whose row i lives on ``boxes[i]`` of the node's map: values (B, C, h, w)."""

    values: Tensor
    boxes: list[Box]

    def __add__(self, other: "Boxed") -> "Boxed":
        assert self.boxes == other.boxes  # every arrival is cut to the node's planned boxes
        return Boxed(self.values + other.values, self.boxes)


def plan_cones(graph: LayerGraph, record: Record, target: fx.Node) -> dict[fx.Node, ReceptiveField | None]:
    """The cone of a target unit in every node's map on the way down: unit (y, x) of ``target``
    depends only on ``cones[node].box(y, x)`` of ``node``'s output; None where it is the whole map.

    A node read by several later ones (a residual branch point) gets the union of their cones.
    """
    cones: dict[fx.Node, ReceptiveField | None] = {target: UNIT_CONE if _spatial(record, target) else None}
    for node in reversed(graph.ancestors(target)):
        if node not in cones or node is graph.input:
            continue
        kind, window = node_window(graph, node)
        for source in node.all_input_nodes:
            if source not in record.on_path:
                continue
            below = _cone_below(cones[node], kind, window, node, source, record)
            cones[source] = below if source not in cones else _merge(cones[source], below)
    return cones


def _cone_below(cone: ReceptiveField | None, kind: FieldKind, window: Any, node: fx.Node, source: fx.Node,
                record: Record) -> ReceptiveField | None:
    if cone is None or cone.size is None or not (_spatial(record, source) and _spatial(record, node)):
        return None
    if kind is FieldKind.WINDOW and window is not None and node.args and node.args[0] is source:
        kernel, stride, padding, dilation = window_geometry(window)
        return ReceptiveField(
            size=tuple((c - 1) * s + d * (k - 1) + 1 for c, s, d, k in zip(cone.size, stride, dilation, kernel)),
            stride=tuple(j * s for j, s in zip(cone.stride, stride)),
            offset=tuple(o * s - p for o, s, p in zip(cone.offset, stride, padding)))
    if kind is FieldKind.PAD and isinstance(window, nn.ZeroPad2d):
        left, _, top, _ = window.padding
        return ReceptiveField(cone.size, cone.stride, (cone.offset[0] - top, cone.offset[1] - left))
    # pointwise and channel concatenation, but not a spatial broadcast (an SE block's gate)
    if kind in (FieldKind.POINTWISE, FieldKind.CONCAT) and record.shapes[source][-2:] == record.shapes[node][-2:]:
        return cone
    return None


def _merge(a: ReceptiveField | None, b: ReceptiveField | None) -> ReceptiveField | None:
    if a is None or b is None:
        return None
    union = union_fields([a, b])
    return union if union.size is not None else None  # different strides: no common box


def _spatial(record: Record, node: fx.Node) -> bool:
    return node in record.shapes and len(record.shapes[node]) == 4


def fitted(boxes: list[Box], height: int, width: int) -> list[Box]:
    """``boxes`` clipped to the map, then each grown to the largest clipped size, inward from the
    border: every row of a batch keeps the same box size, and every box holds its cone. A box is at
    least one position: a unit that reads only padding has an empty cone in the layers below, and
    the windows of a max pool or convolution over an empty box are not defined.

    >>> fitted([Box(-2, 3, 5, 5), Box(4, 4, 5, 5)], 8, 8)
    [Box(top=0, left=3, height=4, width=5), Box(top=4, left=3, height=4, width=5)]
    >>> fitted([Box(-1, -1, 1, 1)], 8, 8)  # a cone wholly in the padding
    [Box(top=0, left=0, height=1, width=1)]
    """
    clipped = [box.clipped(height, width) for box in boxes]
    h, w = max(1, *(box.height for box in clipped)), max(1, *(box.width for box in clipped))
    return [Box(min(box.top, height - h), min(box.left, width - w), h, w) for box in clipped]


def rewindow(values: Tensor, origins: list[tuple[int, int]], boxes: list[Box]) -> Tensor:
    """Rows ``values[i]`` placed at ``origins[i]`` of a map, read back over ``boxes[i]`` (zero elsewhere)."""
    height, width = values.shape[-2:]
    if (height, width) == (boxes[0].height, boxes[0].width) and all(
            origin == (box.top, box.left) for origin, box in zip(origins, boxes)):
        return values
    shifts = {(box.top - top, box.left - left) for (top, left), box in zip(origins, boxes)}
    if len(shifts) == 1:
        (dy, dx), = shifts
        if 0 <= dy and dy + boxes[0].height <= height and 0 <= dx and dx + boxes[0].width <= width:
            return values[..., dy:dy + boxes[0].height, dx:dx + boxes[0].width]  # a view: every box inside
    out = torch.empty((*values.shape[:-2], boxes[0].height, boxes[0].width), dtype=values.dtype,
                      device=values.device, memory_format=_layout(values)).zero_()
    for row, ((top, left), box) in enumerate(zip(origins, boxes)):
        t0, t1 = max(top, box.top), min(top + height, box.top + box.height)
        l0, l1 = max(left, box.left), min(left + width, box.left + box.width)
        if t0 < t1 and l0 < l1:
            out[row, ..., t0 - box.top:t1 - box.top, l0 - box.left:l1 - box.left] = (
                values[row, ..., t0 - top:t1 - top, l0 - left:l1 - left])
    return out


def _layout(values: Tensor) -> torch.memory_format:
    """The layout of ``values``, kept: the backward's signals run channels last (see ConePlan.step)."""
    if values.dim() == 4 and values.stride(1) == 1 and values.shape[1] > 1:  # channels last, or a view of it
        return torch.channels_last
    return torch.contiguous_format


def _origins(boxes: list[Box]) -> list[tuple[int, int]]:
    return [(box.top, box.left) for box in boxes]


class ConePlan:
    """The boxes of one backward pass: ``positions[i]`` is row i's unit at the target, ``images[i]``
    the image of the recorded batch whose switches and masks it reads. ``record`` is the forward
    the steps read; a cone-restricted one (coneforward.py) replaces the record of shapes it was
    planned from."""

    def __init__(self, graph: LayerGraph, record: Record, target: fx.Node, positions: list[tuple[int, int]],
                 images: list[int]) -> None:
        self.cones = plan_cones(graph, record, target)
        self.record, self.positions, self.images = record, positions, images
        self._boxes: dict[fx.Node, list[Box]] = {}

    def bounded(self, node: fx.Node) -> bool:
        return self.cones.get(node) is not None

    def boxes(self, node: fx.Node) -> list[Box]:
        if node not in self._boxes:
            cone = self.cones[node]
            assert cone is not None
            height, width = self.record.shapes[node][-2:]
            self._boxes[node] = fitted([cone.box(y, x, (height, width)) for y, x in self.positions], height, width)
        return self._boxes[node]

    def full(self, signal: Boxed, node: fx.Node) -> Tensor:
        """The signal over the whole map of ``node``."""
        height, width = self.record.shapes[node][-2:]
        return rewindow(signal.values, _origins(signal.boxes), [Box(0, 0, height, width)] * len(signal.boxes))

    def arriving(self, source: fx.Node, contribution: Any) -> Any:
        """A contribution for ``source`` in the form its plan asks: cut to its boxes when it has a cone."""
        if not self.bounded(source) or isinstance(contribution, Boxed) or not isinstance(contribution, Tensor):
            return contribution
        boxes = self.boxes(source)
        return Boxed(rewindow(contribution, [(0, 0)] * len(boxes), boxes), boxes)

    def step(self, step: Mirror, node: fx.Node, signal: Boxed, sources: list[fx.Node], rule: ReluRule
             ) -> list[Boxed | None] | None:
        """The step on the boxes alone, one signal per source; None when it needs the whole map."""
        on_path = [s for s in sources if s in self.record.on_path]
        if not on_path or not all(self.bounded(s) for s in on_path):
            return None
        values, saved = signal.values, self.record.saved.get(node)
        if isinstance(step, TransposedConv2d):
            (stride_y, stride_x), (pad_y, pad_x) = step.stride, step.padding
            # padding 0 keeps every position the box reaches; rewindow drops those outside the map
            # Channels last: the CPU's (oneDNN's) transposed convolutions run up to 1.7x faster on it
            # than on (N, C, H, W) (64 channels at 192x192); only the rounding differs.
            values = values.contiguous(memory_format=torch.channels_last)
            out = F.conv_transpose2d(values, step.channels_last_weight(), None, step.stride, 0, 0, step.groups,
                                     step.dilation)
            origins = [(b.top * stride_y - pad_y, b.left * stride_x - pad_x) for b in signal.boxes]
            return self._placed(sources, [out], origins)
        if isinstance(step, Unpool2d):
            return self._placed(sources, [self._unpool(values, signal.boxes, saved, self.boxes(on_path[0]))],
                                _origins(self.boxes(on_path[0])))
        if isinstance(step, Rectify):
            derivative = None if saved is None else self.crop(saved, signal.boxes)
            return self._placed(sources, step(values, derivative, rule), _origins(signal.boxes))
        if isinstance(step, (ChannelScale, Passthrough)):
            return self._placed(sources, step(values, None, rule), _origins(signal.boxes))
        if isinstance(step, Sum) and all(len(shape) == 4 and shape[1:] == self.record.shapes[node][1:]
                                         for shape in saved or ()):
            return self._placed(sources, [values] * len(sources), _origins(signal.boxes))
        if isinstance(step, Split) and step.dim in (1, -3):
            return self._placed(sources, list(values.split(saved, dim=1)), _origins(signal.boxes))
        if isinstance(step, Unpad):
            return self._placed(sources, [values], [(b.top - step.top, b.left - step.left) for b in signal.boxes])
        return None

    def _placed(self, sources: list[fx.Node], outputs: list[Tensor], origins: list[tuple[int, int]]
                ) -> list[Boxed | None]:
        assert len(outputs) == len(sources), (len(outputs), len(sources))
        placed: list[Boxed | None] = []
        for source, output in zip(sources, outputs):
            if source not in self.record.on_path:
                placed.append(None)
                continue
            boxes = self.boxes(source)
            placed.append(Boxed(rewindow(output, origins, boxes), boxes))
        return placed

    def crop(self, saved: Tensor, boxes: list[Box]) -> Tensor:
        """Each row's image of a recorded (N, C, H, W) tensor, over the row's box."""
        if self.record.boxed:
            return saved  # a cone-restricted forward recorded it so
        return torch.stack([saved[image, ..., b.top:b.top + b.height, b.left:b.left + b.width]
                            for image, b in zip(self.images, boxes)])

    def _unpool(self, values: Tensor, boxes: list[Box], saved: Any, below: list[Box]) -> Tensor:
        """Unpooling on the box: each switch (a flat position in the input map) moved into the input box."""
        switches, input_shape = saved
        height, width = below[0].height, below[0].width
        if self.record.boxed:  # the cone forward kept them as positions in the input's box
            return self._scattered(values, switches, height, width)
        # the switches' rows and columns, found once per record: all of its units' passes read them
        key = ("switch rows and columns", id(switches))
        if key not in self.record.cache:
            self.record.cache[key] = (switches // input_shape[-1], switches % input_shape[-1])
        rows, columns = (self.crop(part, boxes) for part in self.record.cache[key])
        tops = rows.new_tensor([b.top for b in below]).view(-1, 1, 1, 1)
        lefts = rows.new_tensor([b.left for b in below]).view(-1, 1, 1, 1)
        # A fitted box may hold positions past its cone, where the signal is zero; their switches
        # can point outside the input box, so they are clamped (adding a zero anywhere is harmless).
        local = ((rows - tops) * width + (columns - lefts)).clamp_(0, height * width - 1)
        return self._scattered(values, local, below[0].height, below[0].width)

    @staticmethod
    def _scattered(values: Tensor, local: Tensor, height: int, width: int) -> Tensor:
        """(B, C, h, w) values added at their flat positions ``local`` of a (B, C, height, width) box."""
        n, c = values.shape[:2]
        # in (N, H*W, C), which is channels last's own order: no copies
        unpooled = values.new_zeros(n, height * width, c)
        unpooled.scatter_add_(1, local.permute(0, 2, 3, 1).reshape(n, -1, c),
                              values.permute(0, 2, 3, 1).reshape(n, -1, c))
        return unpooled.view(n, height, width, c).permute(0, 3, 1, 2)
