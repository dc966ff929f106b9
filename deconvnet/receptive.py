"""Receptive fields: which input pixels can influence a unit.

A deconvnet projection of one unit is zero outside that unit's receptive field, so
projections and image patches are cropped to it. For a stack of convolutions and
pools the field follows from each layer's kernel, stride, padding and dilation; where
paths meet (a residual addition, a concatenation) it is the union of the paths' fields.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .graph import LayerGraph


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

    size: tuple[int, int] | None
    stride: tuple[int, int] = (1, 1)
    offset: tuple[int, int] = (0, 0)

    def box(self, y: int | None, x: int | None, image_size: tuple[int, int]) -> Box:
        if self.size is None or y is None or x is None:
            return Box(0, 0, *image_size)
        return Box(self.offset[0] + y * self.stride[0], self.offset[1] + x * self.stride[1], *self.size)


WHOLE_INPUT = ReceptiveField(None)
_POINTWISE = (nn.ReLU, nn.ReLU6, nn.BatchNorm2d, nn.Dropout, nn.Identity, nn.LocalResponseNorm)
_POINTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, operator.add, operator.iadd, torch.add}
_POINTWISE_METHODS = {"relu", "relu_", "add", "add_"}


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _through_window(field: ReceptiveField, module: nn.Module) -> ReceptiveField:
    """The field after a sliding window (a convolution or a pool) over ``field``'s units."""
    if field.size is None:
        return field
    kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
    dilation = _pair(getattr(module, "dilation", 1))
    padding = module.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
    padding = _pair(padding)
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


def _union(fields: list[ReceptiveField]) -> ReceptiveField:
    if any(f.size is None for f in fields) or len({f.stride for f in fields}) > 1:
        return WHOLE_INPUT
    top = tuple(min(f.offset[a] for f in fields) for a in (0, 1))
    end = tuple(max(f.offset[a] + f.size[a] for f in fields) for a in (0, 1))
    return ReceptiveField(tuple(e - t for e, t in zip(end, top)), fields[0].stride, top)


def receptive_fields(graph: LayerGraph) -> dict[fx.Node, ReceptiveField]:
    """Every node's receptive field in input pixels, from the model's own layers.

    Unknown operations are taken to mix the whole input, the safe over-estimate.
    """
    fields: dict[fx.Node, ReceptiveField] = {}
    for node in graph.graph.nodes:
        inputs = [fields[n] for n in node.all_input_nodes if n in fields]
        if node is graph.input:
            fields[node] = ReceptiveField((1, 1))
        elif not inputs:
            continue  # a constant: it does not depend on the input
        elif node.op == "call_module":
            module = graph.model.get_submodule(node.target)
            if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                fields[node] = _through_window(_union(inputs), module)
            elif isinstance(module, nn.ZeroPad2d):
                fields[node] = _shifted(_union(inputs), module.padding)
            elif isinstance(module, _POINTWISE):
                fields[node] = _union(inputs)
            else:
                fields[node] = WHOLE_INPUT
        elif _is_pointwise_function(node):
            fields[node] = _union(inputs)
        else:
            fields[node] = WHOLE_INPUT
    return fields


def _is_pointwise_function(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target is torch.cat:
        # Along channels only: a concatenation along a spatial axis would move pixels.
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        return dim == 1
    if node.op == "call_function":
        return node.target in _POINTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _POINTWISE_METHODS
