"""The forward-only half of the deconvnet: the model's graph, its layers, their receptive
fields and their activations. A scan, occlusion or ``deconv layers`` need nothing more;
``Deconvnet`` adds the mirror on top of it.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
from torch import Tensor, nn

from ..errors import DeconvError
from .concrete import record_graph
from .graph import Layer, LayerGraph, NotTraceable
from .receptive import Box, ReceptiveField, receptive_fields
from .validate import check_input


class FeatureExtractor:
    """The activations of any layer of ``model``, the forward pass stopping at the deepest one.

    ``tracing``: "auto" traces with torch.fx and, for a model it cannot trace, records the
    graph from a real forward pass on each input (concrete.py); "symbolic" or
    "concrete" forces one of them.

    >>> import torch, torchvision
    >>> features = FeatureExtractor(torchvision.models.vgg11().eval())
    >>> features.activations(torch.rand(2, 3, 32, 32), ["conv2_1"])["conv2_1"].shape
    torch.Size([2, 128, 16, 16])
    """

    graph: LayerGraph

    def __init__(self, model: nn.Module, tracing: str = "auto") -> None:
        if tracing not in ("auto", "symbolic", "concrete"):
            raise DeconvError(f"unknown tracing {tracing!r}: expected auto, symbolic or concrete")
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, received {type(model).__name__}")
        self.model = model
        self._released = False
        self._truncated: dict[tuple[str, ...], Callable] = {}
        self._fields: dict[fx.Node, ReceptiveField] = {}
        self.concrete = tracing == "concrete"
        if not self.concrete:
            try:
                self._attach(LayerGraph(model))
            except NotTraceable as error:
                if tracing == "symbolic":
                    raise DeconvError(f"{error}; tracing='concrete' records a real forward pass instead") from error
                self.concrete = True
        if self.concrete:
            self.graph = None  # type: ignore[assignment]  # recorded from the first input

    def _attach(self, graph: LayerGraph) -> None:
        """Use ``graph`` from now on (a subclass builds what depends on it)."""
        self.graph = graph
        self._fields = receptive_fields(graph)
        self._truncated = {}

    def follow(self, x: Tensor) -> None:
        """For a model recorded from real forward passes: record the path the model takes on ``x``.

        Projections and activations do this themselves; call it before naming layers
        (``graph.layers``) of such a model. Nothing happens for a traced model.
        """
        if self.concrete and not self._released:
            try:
                graph, calls, _ = record_graph(self.model, x)
            except RuntimeError as error:
                raise DeconvError(f"the model failed on an input of shape {tuple(x.shape)}: "
                                  f"{str(error).splitlines()[0] if str(error).strip() else error!r}") from error
            self._attach(LayerGraph(self.model, traced=(graph, calls)))

    def follow_size(self, input_size: tuple[int, int], channels: int = 3) -> None:
        """For a model recorded from real forward passes that has no graph yet: record it on a zero
        input of ``input_size`` (height, width), so that its layers can be named before any image.

        Later projections and activations record again on their own input.
        """
        if self.concrete and self.graph is None:
            parameter = next(self.model.parameters(), None)
            device = parameter.device if parameter is not None else None
            self.follow(torch.zeros(1, channels, *input_size, device=device))

    def _recorded(self) -> LayerGraph:
        if self.graph is None:
            raise DeconvError(f"{type(self.model).__name__} is recorded from a real forward pass: project or "
                              f"compute activations of an input first (or call follow(x))")
        return self.graph

    def __enter__(self) -> "FeatureExtractor":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def release(self) -> None:
        """Drop the graph's compiled forward passes."""
        self._truncated.clear()
        self._fields = {}
        self._released = True

    # -- layers -----------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        return self._recorded().find(name)

    def receptive_field(self, layer: str) -> ReceptiveField:
        """The receptive field of ``layer``'s units in input pixels."""
        return self._fields.get(self._recorded().find(layer).node, ReceptiveField(None))

    def box(self, layer: str, position: tuple[int, int] | None, image_size: tuple[int, int]) -> Box:
        """The input rectangle seen by the unit at ``position`` (unclipped)."""
        y, x = position if position is not None else (None, None)
        return self.receptive_field(layer).box(y, x, image_size)

    # -- forward ----------------------------------------------------------------------
    def activations(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """The outputs of ``layers`` for input ``x``, the forward pass stopping at the deepest."""
        self._check_input(x)
        self.follow(x)
        forward = self._forward_to(layers)
        # oneDNN's fastest layout on this CPU (1.4x for the scan). Projections keep the model's
        # own layout: a different summation order can flip a near-tie between max-pool switches.
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            try:
                outputs = forward(x)
            except RuntimeError as error:
                raise self._failure(x, layers[-1], error) from error
        return dict(zip(layers, outputs))

    def forward_to(self, layers: Sequence[str]) -> Callable[[Tensor], tuple[Tensor, ...]]:
        """A forward pass that stops at the deepest of ``layers`` and returns their outputs, with
        autograd (for optimizing an input; ``activations`` runs without it).

        >>> import torch, torchvision
        >>> features = FeatureExtractor(torchvision.models.vgg11().eval())
        >>> x = torch.rand(1, 3, 32, 32, requires_grad=True)
        >>> (out,) = features.forward_to(["conv2_1"])(x)
        >>> out.requires_grad
        True
        """
        self._recorded()
        for name in layers:
            self.layer(name)  # an unknown name fails here, listing the valid ones
        return self._forward_to(layers)

    def _forward_to(self, layers: Sequence[str]) -> Callable:
        key = tuple(layers)
        if key not in self._truncated:
            self._truncated[key] = self._truncate([self.graph.find(n).node for n in layers])
        return self._truncated[key]

    def minimum_input_size(self, layer: str, channels: int = 3) -> int | None:
        """The smallest square input side for which ``layer`` has an output (None: over 4096)."""
        parameter = next(self.model.parameters(), None)
        dtype, device = (parameter.dtype, parameter.device) if parameter is not None else (None, None)

        def fits(side: int) -> bool:
            try:
                with torch.inference_mode():
                    empty = torch.empty(0, channels, side, side, dtype=dtype, device=device)
                    (output,) = self._forward_to([layer])(empty)
            except RuntimeError:
                return False
            return all(size > 0 for size in output.shape[1:])

        low, high = 1, 4096
        if not fits(high):
            return None
        while low < high:  # shapes only: an empty batch computes nothing
            middle = (low + high) // 2
            low, high = (low, middle) if fits(middle) else (middle + 1, high)
        return low

    def _failure(self, x: Tensor, layer: str, error: RuntimeError) -> DeconvError:
        """The model's own error, or, when the image is too small for the layer, the size it needs."""
        height, width = x.shape[-2:]
        message = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
        # Only a shape complaint can mean "too small"; a CUDA error or a bug is reported as it is.
        about_size = re.search(r"size|shape|dimension|kernel|too small|smaller|padding", message, re.IGNORECASE)
        needed = self.minimum_input_size(layer, x.shape[1]) if about_size else None
        if needed is not None and min(height, width) < needed:
            return DeconvError(f"the input is {height}x{width} pixels, too small for layer {layer}: "
                               f"it needs at least {needed}x{needed}; use a larger image or an earlier layer")
        return DeconvError(f"the model failed on an input of shape {tuple(x.shape)} before reaching {layer}: "
                           f"{message}")

    def _truncate(self, targets: list[fx.Node]) -> Callable:
        """A compiled forward that runs only what ``targets`` need and returns their outputs."""
        if self.concrete:
            return lambda x: self._interpret(x, targets)
        needed = set(self.graph.ancestors_of(targets))
        graph = fx.Graph()
        copies: dict[fx.Node, fx.Node] = {}
        kept: dict[fx.Node, fx.Node] = {}
        for node in self.graph.graph.nodes:
            if node in needed:
                copies[node] = graph.node_copy(node, lambda n: copies[n])
                if node in targets and any(user in needed for user in node.users):
                    # a later in-place ReLU would overwrite this output: copy it right away
                    kept[node] = graph.call_function(_kept_copy, (copies[node],))
        graph.output(tuple(kept.get(target, copies[target]) for target in targets))
        return fx.GraphModule(self.model, graph)

    def _interpret(self, x: Tensor, targets: list[fx.Node]) -> tuple:
        """The outputs of ``targets``, running a recorded graph node by node."""
        interpreter = fx.Interpreter(self.model, garbage_collect_values=False, graph=self.graph.graph)
        kept: dict[fx.Node, Any] = {}
        for node in self.graph.ancestors_of(targets):
            interpreter.env[node] = x if node.op == "placeholder" else interpreter.run_node(node)
            if node in targets:
                value = interpreter.env[node]
                kept[node] = _kept_copy(value)
        return tuple(kept[t] for t in targets)

    def _check_input(self, x: Tensor) -> None:
        if self._released:
            raise DeconvError("this Deconvnet was released; create a new one for further projections")
        check_input(x, self.model)


def _kept_copy(value: Any) -> Any:
    """A layer's output as it is now: a tensor is cloned; a shape or a number (``x.ndim``) is kept."""
    return value.clone() if isinstance(value, Tensor) else value
