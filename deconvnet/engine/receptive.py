"""Receptive fields: which input pixels can influence a unit.

A deconvnet projection of one unit is zero outside that unit's receptive field, so
projections and image patches are cropped to it. For a stack of convolutions and
pools the field follows from each layer's kernel, stride, padding and dilation; where
paths meet (a residual addition, a concatenation) it is the union of the paths' fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NamedTuple

import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .graph import LayerGraph
from .operations import FieldKind, operation_of


class Box(NamedTuple):
    """A rectangle of input pixels; it may run past the image border."""

    top: int
    left: int
    height: int
    width: int

    def clipped(self, height: int, width: int) -> "Box":
        top, left = max(self.top, 0), max(self.left, 0)
        bottom, right = min(self.top + self.height, height), min(self.left + self.width, width)
        return Box(top, left, max(bottom - top, 0), max(right - left, 0))


@dataclass(frozen=True)
class ReceptiveField:
    """Unit (y, x) sees input rows offset[0] + y*stride[0] ... + size[0] - 1 (likewise columns).

    ``size`` is None for a unit that sees the whole input (after global pooling or a
    fully connected layer).

    >>> ReceptiveField((3, 3), (1, 1), (-1, -1)).box(0, 0, (8, 8))
    Box(top=-1, left=-1, height=3, width=3)
    """

    size: tuple[int, ...] | None  # (height, width)
    stride: tuple[int, ...] = (1, 1)
    offset: tuple[int, ...] = (0, 0)

    def box(self, y: int | None, x: int | None, image_size: tuple[int, int]) -> Box:
        if self.size is None or y is None or x is None:
            return Box(0, 0, *image_size)
        return Box(self.offset[0] + y * self.stride[0], self.offset[1] + x * self.stride[1], *self.size)


WHOLE_INPUT = ReceptiveField(None)


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class Window(NamedTuple):
    """A sliding window's geometry, each a (rows, columns) pair."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


def window_geometry(module: Any) -> Window:
    """kernel, stride, padding and dilation of a convolution or pool (or a namespace of them)."""
    kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
    dilation = _pair(getattr(module, "dilation", 1))
    padding = module.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
    return Window(kernel, stride, _pair(padding), dilation)


def node_window(graph: LayerGraph, node: fx.Node) -> tuple[FieldKind, Any]:
    """The registry's field kind of ``node`` and the operation's module (or call arguments), if any."""
    module = graph.model.get_submodule(str(node.target)) if node.op == "call_module" else None
    operation = operation_of(module, node.op, node.target)
    kind = operation.field if operation is not None else FieldKind.WHOLE
    if kind is FieldKind.WINDOW and module is None:
        return kind, _functional_window(node)
    if kind is FieldKind.CONCAT and not _concatenates_channels(node):
        return FieldKind.WHOLE, None
    return kind, module


def _through_window(field: ReceptiveField, module: Any) -> ReceptiveField:
    """The field after a sliding window (a convolution or a pool) over ``field``'s units."""
    if field.size is None:
        return field
    kernel, stride, padding, dilation = window_geometry(module)
    return ReceptiveField(
        size=tuple(f + (k - 1) * d * j for f, k, d, j in zip(field.size, kernel, dilation, field.stride)),
        stride=tuple(j * s for j, s in zip(field.stride, stride)),
        offset=tuple(o - p * j for o, p, j in zip(field.offset, padding, field.stride)),
    )


def _shifted(field: ReceptiveField, padding: tuple[int, int, int, int]) -> ReceptiveField:
    """Padding (left, right, top, bottom) moves unit (0, 0) up and left by the top and left pads."""
    if field.size is None:
        return field
    left, _, top, _ = padding
    return ReceptiveField(field.size, field.stride,
                          (field.offset[0] - top * field.stride[0], field.offset[1] - left * field.stride[1]))


def union_fields(fields: list[ReceptiveField]) -> ReceptiveField:
    if any(f.size is None for f in fields) or len({f.stride for f in fields}) > 1:
        return WHOLE_INPUT
    top = tuple(min(f.offset[a] for f in fields) for a in (0, 1))
    end = tuple(max(f.offset[a] + f.size[a] for f in fields if f.size is not None) for a in (0, 1))
    return ReceptiveField(tuple(e - t for e, t in zip(end, top)), fields[0].stride, top)


def receptive_fields(graph: LayerGraph) -> dict[fx.Node, ReceptiveField]:
    """Every node's receptive field in input pixels, from the model's own layers.

    Each operation's rule is its registry entry's ``field`` (operations.py); an operation
    without one is taken to mix the whole input, the safe over-estimate.
    """
    fields: dict[fx.Node, ReceptiveField] = {}
    for node in graph.graph.nodes:
        inputs = [fields[n] for n in node.all_input_nodes if n in fields]
        if node is graph.input:
            fields[node] = ReceptiveField((1, 1))
            continue
        if not inputs or node.op not in ("call_module", "call_function", "call_method"):
            continue  # a constant: it does not depend on the input
        kind, window = node_window(graph, node)
        if kind is FieldKind.WINDOW:
            fields[node] = _through_window(union_fields(inputs), window) if window is not None else WHOLE_INPUT
        elif kind is FieldKind.PAD and isinstance(window, nn.ZeroPad2d):
            fields[node] = _shifted(union_fields(inputs), window.padding)
        elif kind in (FieldKind.POINTWISE, FieldKind.CONCAT):
            fields[node] = union_fields(inputs)
        else:
            fields[node] = WHOLE_INPUT
    return fields


def _concatenates_channels(node: fx.Node) -> bool:
    # Along channels only: a concatenation along a spatial axis would move pixels.
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return bool(dim == 1)


def _functional_window(node: fx.Node) -> SimpleNamespace | None:
    """kernel_size, stride, padding, dilation of F.max_pool2d / F.avg_pool2d from the call's arguments."""
    names = ["input", "kernel_size", "stride", "padding"] + (["dilation"] if node.target is F.max_pool2d else [])
    given = dict(zip(names, node.args), **{k: v for k, v in node.kwargs.items() if k in names})
    if any(isinstance(v, fx.Node) for k, v in given.items() if k != "input") or "kernel_size" not in given:
        return None
    return SimpleNamespace(kernel_size=given["kernel_size"], stride=given.get("stride") or given["kernel_size"],
                           padding=given.get("padding", 0), dilation=given.get("dilation", 1))
