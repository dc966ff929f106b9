"""The operation registry: for each forward operation, its mirror step and its receptive-field kind.

Adding an operation is one entry here. An operation that is not listed gets its exact
adjoint (steps.Adjoint) and, for receptive fields, counts as reading the whole input.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DeconvError
from .steps import (
    Adjoint,
    ChannelScale,
    Mirror,
    Passthrough,
    Rectify,
    Reshape,
    Split,
    SpreadAverage,
    Sum,
    TransposedConv2d,
    TransposedLinear,
    Unpad,
    Unpool2d,
)


class FieldKind(Enum):
    """What an operation does to a receptive field (receptive.py reads it)."""

    WINDOW = "window"  # a sliding window: kernel, stride, padding, dilation
    POINTWISE = "pointwise"  # position by position
    PAD = "pad"  # shifts the origin
    CONCAT = "concat"  # pointwise when it concatenates channels, else the whole input
    WHOLE = "whole"  # every output reads the whole input (also any operation not listed)


@dataclass(frozen=True)
class Operation:
    """One registry entry: how to build the operation's mirror step, and its receptive-field kind."""

    mirror: Callable[..., Mirror]
    field: FieldKind = FieldKind.WHOLE


MODULE_OPERATIONS: dict[type, Operation] = {
    nn.Conv2d: Operation(TransposedConv2d, FieldKind.WINDOW),
    nn.MaxPool2d: Operation(Unpool2d, FieldKind.WINDOW),
    nn.AvgPool2d: Operation(lambda m: Adjoint("AvgPool2d"), FieldKind.WINDOW),
    nn.ReLU: Operation(lambda m: Rectify(), FieldKind.POINTWISE),
    nn.ReLU6: Operation(lambda m: Rectify(upper=6.0), FieldKind.POINTWISE),
    nn.BatchNorm2d: Operation(ChannelScale, FieldKind.POINTWISE),
    nn.Dropout: Operation(lambda m: Passthrough("Dropout: identity in eval mode"), FieldKind.POINTWISE),
    nn.Identity: Operation(lambda m: Passthrough(), FieldKind.POINTWISE),
    nn.LocalResponseNorm: Operation(
        lambda m: Passthrough("LocalResponseNorm: skipped, as in the paper's deconvnet"), FieldKind.POINTWISE),
    nn.AdaptiveAvgPool2d: Operation(lambda m: SpreadAverage()),
    nn.ZeroPad2d: Operation(Unpad, FieldKind.PAD),
    nn.Flatten: Operation(lambda m: Reshape()),
    nn.Linear: Operation(TransposedLinear),
    **{kind: Operation(lambda m, name=kind.__name__: Rectify(redo=m, name=name), FieldKind.POINTWISE)
       for kind in (nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish)},
    **{kind: Operation(lambda m, name=kind.__name__: Adjoint(name), FieldKind.POINTWISE)
       for kind in (nn.Sigmoid, nn.Tanh, nn.Hardsigmoid, nn.BatchNorm1d, nn.Dropout2d)},
}
_RELU_LIKE_FUNCTIONS = (F.leaky_relu, F.elu, F.silu, F.gelu, F.hardswish, F.mish)
FUNCTION_OPERATIONS: dict[Any, Operation] = {
    torch.flatten: Operation(lambda a, k: Reshape()),
    torch.reshape: Operation(lambda a, k: Reshape()),
    F.relu: Operation(lambda a, k: Rectify(), FieldKind.POINTWISE),
    torch.relu: Operation(lambda a, k: Rectify(), FieldKind.POINTWISE),
    F.relu6: Operation(lambda a, k: Rectify(upper=6.0), FieldKind.POINTWISE),
    F.adaptive_avg_pool2d: Operation(lambda a, k: SpreadAverage()),
    operator.add: Operation(lambda a, k: Sum(), FieldKind.POINTWISE),
    operator.iadd: Operation(lambda a, k: Sum(), FieldKind.POINTWISE),
    torch.add: Operation(lambda a, k: Sum() if len(a) <= 2 and "alpha" not in k else Adjoint("add"),
                         FieldKind.POINTWISE),
    torch.cat: Operation(lambda a, k: Split(a[1] if len(a) > 1 else k.get("dim", 0)), FieldKind.CONCAT),
    F.max_pool2d: Operation(lambda a, k: Adjoint("max_pool2d"), FieldKind.WINDOW),
    F.avg_pool2d: Operation(lambda a, k: Adjoint("avg_pool2d"), FieldKind.WINDOW),
    **{f: Operation(lambda a, k, f=f: Rectify(redo=_redo_function(f, a, k), name=f.__name__), FieldKind.POINTWISE)
       for f in _RELU_LIKE_FUNCTIONS},
    **{f: Operation(lambda a, k, f=f: Adjoint(getattr(f, "__name__", str(f))), FieldKind.POINTWISE)
       for f in (operator.sub, operator.mul, operator.truediv, torch.mul, torch.sub, torch.sigmoid, F.sigmoid,
                 torch.tanh, F.hardsigmoid, F.dropout, operator.imul, operator.isub, operator.neg)},
}
METHOD_OPERATIONS: dict[str, Operation] = {
    "view": Operation(lambda a, k: Reshape()),
    "reshape": Operation(lambda a, k: Reshape()),
    "flatten": Operation(lambda a, k: Reshape()),
    "relu": Operation(lambda a, k: Rectify(), FieldKind.POINTWISE),
    "relu_": Operation(lambda a, k: Rectify(), FieldKind.POINTWISE),
    "add": Operation(lambda a, k: Sum() if len(a) <= 2 and "alpha" not in k else Adjoint("add"), FieldKind.POINTWISE),
    "add_": Operation(lambda a, k: Sum() if len(a) <= 2 and "alpha" not in k else Adjoint("add_", True),
                      FieldKind.POINTWISE),
    **{name: Operation(lambda a, k, name=name: Adjoint(name, name.endswith("_")), FieldKind.POINTWISE)
       for name in ("mul", "mul_", "sub", "sub_", "div", "div_", "sigmoid", "sigmoid_", "tanh", "contiguous",
                    "clone", "float", "to", "type_as")},
}


def _redo_function(function: Callable[..., Tensor], args: tuple, kwargs: dict) -> Callable[[Tensor], Tensor]:
    from torch.fx import Node

    rest = args[1:]
    if any(isinstance(a, Node) for a in (*rest, *kwargs.values())):
        raise DeconvError(f"{function.__name__} with a computed parameter is not supported")
    return lambda x: function(x, *rest, **kwargs)


def operation_of(module: nn.Module | None, op: str, target: Any) -> Operation | None:
    """The registry entry of a graph operation, None when it has no entry (exact types only:
    a subclass may compute something else in its forward)."""
    if module is not None:
        return MODULE_OPERATIONS.get(type(module))
    if op == "call_function":
        try:
            return FUNCTION_OPERATIONS.get(target)
        except TypeError:  # an unhashable callable
            return None
    return METHOD_OPERATIONS.get(target)


def supported_operations() -> str:
    names = [t.__name__ for t in MODULE_OPERATIONS]
    names += [getattr(f, "__name__", str(f)) for f in FUNCTION_OPERATIONS]
    return ", ".join(sorted(set(names))) + ", and any differentiable operation by its exact adjoint"


