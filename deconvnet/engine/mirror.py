"""The mirrored network: one backward step per forward operation (Zeiler & Fergus 2014, Fig. 1).

Each operation of the graph gets its registry entry's mirror (operations.py); an operation the
recorded graph cannot follow stands as ``Unsupported`` and raises only if a projection
crosses it.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
from torch import nn

from ..errors import DeconvError
from .graph import AutogradFunctionCall, Layer, LayerGraph
from .operations import operation_of
from .steps import Adjoint, Mirror, Unsupported


class DeconvnetMirror(nn.Module):
    """The mirrored network, one backward step per forward operation, printed top-down."""

    def __init__(self, graph: LayerGraph) -> None:
        super().__init__()
        self.steps: dict[fx.Node, Mirror | Unsupported] = {}
        self.names: dict[fx.Node, str] = {}
        modules = nn.ModuleList()
        for layer in graph.layers:
            if layer.is_container:
                continue
            step = build_mirror(layer, graph)
            self.steps[layer.node], self.names[layer.node] = step, layer.name
            if isinstance(step, Mirror):
                modules.append(step)
        self.modules_ = modules  # the steps hold no parameters: the user's weights are read, not registered
        # in-place writes whose result nothing reads: the data flow does not show them
        self.unseen = {node.args[0]: self.steps[node] for node in graph.graph.nodes
                       if node in self.steps and node.args and isinstance(node.args[0], fx.Node) and not node.users
                       and (node.target is operator.setitem or in_place(node, graph))}
        self.mutated = {node for node in graph.graph.nodes if any(in_place(user, graph) and user.args
                                                                   and user.args[0] is node for user in node.users)}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(  # from the top layer down to the pixels"]
        for node in reversed(list(self.steps)):
            lines.append(f"  ({self.names[node]}): {self.steps[node]!r}".replace("\n", "\n  "))
        return "\n".join(lines + [")"])


def build_mirror(layer: Layer, graph: LayerGraph) -> Mirror | Unsupported:
    node = layer.node
    where = f"{layer.name} ({layer.kind})"
    target = node.target
    if node.op == "call_function" and target is operator.setitem:
        return Unsupported(f"{where} assigns into a tensor in place, which the recorded graph cannot follow")
    if isinstance(target, AutogradFunctionCall):
        return Unsupported(f"{where} is a custom autograd Function: its backward is the model's own, "
                           f"not a rule of the deconvnet")
    in_kwargs: list[fx.Node] = []
    fx.node.map_arg(node.kwargs, in_kwargs.append)
    dynamic_kwargs = any(n in graph.dynamic for n in in_kwargs)  # hand-written mirrors read positional inputs
    operation = operation_of(layer.module, node.op, target)
    if target is torch.cat and node.args and isinstance(node.args[0], fx.Node):
        operation = None  # a computed sequence (chunk pieces reordered): its adjoint sorts it out
    try:
        if operation is None or dynamic_kwargs:
            step: Mirror = Adjoint(layer.kind, inplace=in_place(node, graph))
        elif layer.module is not None:
            step = operation.mirror(layer.module)
        else:
            step = operation.mirror(node.args, node.kwargs)
    except DeconvError as error:
        return Unsupported(f"{where}: {error}")
    if isinstance(step, Adjoint) and step.inplace and node.args and isinstance(node.args[0], fx.Node):
        # The adjoint runs on a copy; a later reader of the overwritten input would miss the change.
        if any(user is not node and _runs_after(user, node) for user in node.args[0].users):
            return Unsupported(f"{where} changes its input in place and the input is read again later; "
                               f"the recorded graph cannot follow that")
    return step


def in_place(node: fx.Node, graph: LayerGraph) -> bool:
    """Does ``node`` overwrite its first argument?"""
    if node.op == "call_module":
        return bool(getattr(graph.model.get_submodule(str(node.target)), "inplace", False))
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.endswith("__")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return bool(node.kwargs.get("inplace")) or (
            node.target in (operator.iadd, operator.isub, operator.imul, operator.itruediv)) or (
            name.endswith("_") and not name.endswith("__"))
    return False


def _runs_after(node: fx.Node, other: fx.Node) -> bool:
    current = other.next
    while current.op != "root":
        if current is node:
            return True
        current = current.next
    return False
