"""The data flow of one real forward pass, for models torch.fx cannot trace symbolically.

Zeiler & Fergus's deconvnet needs only what one forward pass did: which layers ran, on
which inputs. A ``forward`` that branches on a tensor value, or loops over a list whose
length depends on the input, has no single symbolic graph, but every concrete input takes
one path. So the model runs once on the actual input while (a) hooks on its modules note
each module call (a torch.nn layer is one operation; a container is a named output) and
(b) a TorchFunctionMode notes every torch function and tensor method called outside those
layers. The result is an ordinary torch.fx graph of that path, with the same node kinds
the symbolic tracer makes, so names, mirrors and receptive fields work unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .graph import AutogradFunctionCall, autograd_functions_as_operations, output_fields


class _Result:
    """What the naming code reads from a module call: the node that computed its output."""

    def __init__(self, node: fx.Node) -> None:
        self.node = node


class Constant:
    """A value the recorded path used but did not compute from the input (a tensor created in forward)."""

    __name__ = "constant"

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value

    def __repr__(self) -> str:
        return "constant"


def is_leaf_module(module: nn.Module) -> bool:
    """torch.fx's rule: torch.nn's own layers are operations; everything else is a container."""
    return (module.__module__.startswith(("torch.nn", "torch.ao.nn"))
            and not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)))


class _Recorder(TorchFunctionMode):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.graph = fx.Graph()
        self.paths = {module: path for path, module in model.named_modules()}
        self.nodes: dict[int, fx.Node] = {}  # id(tensor) -> the node that computed it
        self.alive: list[Tensor] = []  # keeps recorded tensors alive, so their ids stay unique
        self.inside_leaf = 0
        self.calls: list[tuple[str, nn.Module, Any, int]] = []
        self.starts: list[int] = []
        self.scopes: list[str] = []
        self.pending: tuple[Any, Any] | None = None  # a torch.nn layer's arguments, until it returns

    # -- values -> graph arguments ---------------------------------------------------------
    def _argument(self, value: Any) -> Any:
        if isinstance(value, Tensor):
            node = self.nodes.get(id(value))
            if node is not None:
                return node
            return self._node("call_function", Constant(value), (), {})
        if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
            return type(value)(self._argument(v) for v in value)
        if isinstance(value, dict):
            return {k: self._argument(v) for k, v in value.items()}
        return value

    def _node(self, op: str, target: Any, args: tuple, kwargs: dict) -> fx.Node:
        node = self.graph.create_node(op, target, args, kwargs)
        node.meta["deconvnet_scope"] = self.scopes[-1] if self.scopes else ""
        return node

    def _note(self, node: fx.Node, output: Any) -> None:
        for value in tree_flatten(output)[0]:
            if isinstance(value, Tensor):
                self.nodes[id(value)] = node
                self.alive.append(value)
        if isinstance(output, (tuple, list)):  # a chunk's pieces: getitem nodes, as fx makes them
            for index, value in enumerate(output):
                if isinstance(value, Tensor):
                    piece = self._node("call_function", _getitem, (node, index), {})
                    self.nodes[id(value)] = piece

    def _depends_on_input(self, args: Any) -> bool:
        return any(isinstance(v, Tensor) and id(v) in self.nodes for v in tree_flatten(args)[0])

    # -- torch functions and tensor methods --------------------------------------------------
    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if self.inside_leaf or not self._depends_on_input((args, kwargs)):
            return output
        if not any(isinstance(v, Tensor) for v in tree_flatten(output)[0]):
            return output  # sizes, booleans for branches: the path already took them
        name = getattr(func, "__name__", "")
        is_method = bool(args) and isinstance(args[0], Tensor) and getattr(Tensor, name, None) is func
        node_args = self._argument(tuple(args))
        node_kwargs = self._argument(dict(kwargs))
        if is_method:
            node = self._node("call_method", name, node_args, node_kwargs)
        else:
            node = self._node("call_function", func, node_args, node_kwargs)
        self._note(node, output)
        return output

    # -- module hooks --------------------------------------------------------------------------
    def before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.starts.append(len(self.graph.nodes))
        self.scopes.append(self.paths.get(module, ""))
        if self.inside_leaf == 0 and is_leaf_module(module) and self._depends_on_input((args, kwargs)):
            self.pending = (self._argument(tuple(args)), self._argument(dict(kwargs)))
        if is_leaf_module(module):
            self.inside_leaf += 1

    def after(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        first = self.starts.pop()
        self.scopes.pop()
        path = self.paths.get(module, "")
        if is_leaf_module(module):
            self.inside_leaf -= 1
            if self.inside_leaf == 0 and self.pending is not None:
                node_args, node_kwargs = self.pending
                self.pending = None
                node = self._node("call_module", path, node_args, node_kwargs)
                self._note(node, output)
        if self.inside_leaf == 0 and isinstance(output, Tensor) and id(output) in self.nodes and path:
            self.calls.append((path, module, _Result(self.nodes[id(output)]), first))

    def function_call(self, call: AutogradFunctionCall, args: tuple, kwargs: dict) -> Any:
        """A custom autograd Function: one operation, its inside not recorded."""
        node_args, node_kwargs = self._argument(tuple(args)), self._argument(dict(kwargs))
        self.inside_leaf += 1
        try:
            output = call(*args, **kwargs)
        finally:
            self.inside_leaf -= 1
        self._note(self._node("call_function", call, node_args, node_kwargs), output)
        return output


def _getitem(value: Any, index: int) -> Any:
    return value[index]


_getitem.__name__ = "getitem"


def record_graph(model: nn.Module, x: Tensor) -> tuple[fx.Graph, list, Any]:
    """The fx graph of the path ``model`` takes on ``x``, its module calls, and the output.

    >>> import torch
    >>> class Branchy(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.relu(x) if x.sum() > 0 else -x
    >>> graph, calls, _ = record_graph(Branchy(), torch.ones(1, 3, 4, 4))
    >>> [n.op for n in graph.nodes]
    ['placeholder', 'call_function', 'output']
    """
    recorder = _Recorder(model)
    placeholder = recorder.graph.placeholder("x")
    x = x.detach().view_as(x)  # a new tensor object: its id names the input
    recorder.nodes[id(x)] = placeholder
    recorder.alive.append(x)
    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(recorder.before, with_kwargs=True))
            handles.append(module.register_forward_hook(recorder.after, with_kwargs=True))
        with torch.no_grad(), recorder, autograd_functions_as_operations(
                recorder.function_call, lambda args: recorder.inside_leaf == 0 and recorder._depends_on_input(args)):
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    # the graph returns the output's tensors by field name ({"logits": node} for a ModelOutput)
    computed = {name: recorder.nodes[id(value)] for name, value in output_fields(output)
                if isinstance(value, Tensor) and id(value) in recorder.nodes}
    recorder.graph.output(computed.get("") if isinstance(output, Tensor) else (computed or None))
    for node in reversed(list(recorder.graph.nodes)):  # what only decided a branch (x.sum() > 0)
        name = getattr(node.target, "__name__", str(node.target))
        if node.op in ("call_function", "call_method") and not node.users and not name.endswith("_"):
            recorder.graph.erase_node(node)
    kept = set(recorder.graph.nodes)
    calls = [call for call in recorder.calls if call[2].node in kept]
    return recorder.graph, calls, output
