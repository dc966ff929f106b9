"""The forward pass that records what the mirror needs (Zeiler & Fergus 2014, Sec. 2.1).

A ``torch.fx.Interpreter`` over the model's graph that stops at the projected layer and,
at each operation on the input's path, lets its mirror step run it: a max pool keeps its
switches, a ReLU its mask, an exact adjoint its inputs under autograd.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
from torch import Tensor

from ..errors import DeconvError
from .graph import LayerGraph
from .mirror import DeconvnetMirror
from .operations import supported_operations
from .relu import ReluRule
from .steps import Adjoint, Unsupported


@dataclass
class Record:
    """One forward pass: the target's value and what each mirror step kept."""

    activation: Any
    saved: dict[fx.Node, Any] = field(default_factory=dict)
    tensors: set[fx.Node] = field(default_factory=set)  # nodes whose value is a tensor
    shapes: dict[fx.Node, Any] = field(default_factory=dict)  # ... and their shapes (cones.py plans by them)
    on_path: set[fx.Node] = field(default_factory=set)  # ... or holds tensors, and depends on the input
    activations: dict[fx.Node, Any] = field(default_factory=dict)  # every target's value
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)  # what the backward derives from it, kept
    boxed: bool = False  # saved switches and masks are per row over a cone plan's boxes (coneforward.py)


class Recorder(fx.Interpreter):
    """Runs ``graph`` on an input up to one node, each mirror step recording what it needs.

    >>> import torch, torchvision
    >>> from deconvnet.engine.graph import LayerGraph
    >>> from deconvnet.engine.relu import RULES
    >>> graph = LayerGraph(torchvision.models.vgg11().eval())
    >>> recorder = Recorder(graph, DeconvnetMirror(graph))
    >>> record = recorder.record(torch.rand(1, 3, 32, 32), graph.find("pool1").node, RULES["guided"])
    >>> tuple(record.activation.shape)
    (1, 64, 16, 16)
    """

    def __init__(self, graph: LayerGraph, mirror: DeconvnetMirror) -> None:
        super().__init__(graph.model, garbage_collect_values=False, graph=graph.graph)
        self.layers, self.mirror = graph, mirror

    def record(self, x: Tensor, target: fx.Node | list[fx.Node], rule: ReluRule) -> Record:
        """One forward pass up to ``target``, or up to several targets at once (their values are then
        in ``Record.activations``), recording what each mirror step on the way needs."""
        targets = target if isinstance(target, list) else [target]
        order = self.layers.ancestors_of(targets)
        for node in order:
            writer = self.mirror.unseen.get(node)
            if writer is not None and node not in targets:
                reason = writer.reason if isinstance(writer, Unsupported) else f"{writer!r} writes in place"
                raise DeconvError(f"cannot project through {reason}. Supported operations: {supported_operations()}")
        last_use = {}
        for index, node in enumerate(order):
            for source in node.all_input_nodes:
                last_use[source] = index
        self.rule, self.record_ = rule, Record(None)
        self.env = {}
        try:
            for index, node in enumerate(order):
                self.env[node] = x if node.op == "placeholder" else self.run_node(node)
                value = self.env[node]
                if isinstance(value, Tensor):
                    self.record_.tensors.add(node)
                    self.record_.shapes[node] = value.shape
                if node in self.layers.dynamic and _holds_tensors(value):
                    self.record_.on_path.add(node)
                for source in node.all_input_nodes:
                    if last_use.get(source) == index and source not in targets:
                        self.env.pop(source, None)  # free activations nothing later reads
            self.record_.activations = {node: self.env[node] for node in targets}
            self.record_.activation = self.env[targets[-1]]
            return self.record_
        finally:
            self.env = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "get_attr" or n not in self.layers.dynamic:
            return super().run_node(n)
        step = self.mirror.steps[n]
        if isinstance(step, Unsupported):
            value = super().run_node(n)
            if _holds_tensors(value):
                raise DeconvError(f"cannot project through {step.reason}. Supported operations: "
                                  f"{supported_operations()}")
            return value
        if isinstance(step, Adjoint):
            inputs = {source: self.env[source] for source in n.all_input_nodes if source in self.record_.on_path}
            value, self.record_.saved[n] = step.record(
                lambda feed: self._call(n, feed), inputs, {s for s in inputs if s in self.mirror.mutated})
            if n in self.mirror.mutated and isinstance(value, Tensor):
                value = value.clone()  # a later in-place step must not touch the record
            return value
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        value, self.record_.saved[n] = step.run(
            lambda: getattr(self, n.op)(n.target, args, kwargs), flat_args(args), self.rule)
        return value

    def _call(self, n: fx.Node, feed: dict[fx.Node, Any]) -> Any:
        """Run node ``n`` with the values in ``feed`` standing for some of its inputs."""
        args = fx.node.map_arg(n.args, lambda source: feed[source] if source in feed else self.env[source])
        kwargs = fx.node.map_arg(n.kwargs, lambda source: feed[source] if source in feed else self.env[source])
        return getattr(self, n.op)(n.target, args, kwargs)


def _holds_tensors(value: Any) -> bool:
    return isinstance(value, Tensor) or (isinstance(value, (tuple, list)) and any(map(_holds_tensors, value)))


def flat_args(args: Any) -> list[Any]:
    """Arguments in order, lists (torch.cat's) flattened."""
    flat: list[Any] = []
    for arg in args:
        flat.extend(flat_args(arg) if isinstance(arg, (list, tuple)) else [arg])
    return flat
