"""The model as a graph of layers: tracing, layer names and readable aliases.

The deconvnet runs the model's own layers forward and their mirrors backward, so it
needs the model's data flow, not just its module tree. torch.fx gives that flow for
plain chains and for residual or concatenating networks alike; the user's model is
only read, never changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Callable, Iterator

import torch
import torch.fx as fx
from torch import nn
from torch.utils._pytree import tree_flatten

from ..errors import DeconvError


@dataclass(frozen=True)
class Layer:
    """A named output of the model: one operation, or a module's call (containers included)."""

    name: str  # qualified module name ("features.29", "layer4"), with ":2" for a module's second use
    node: fx.Node  # the operation whose result this is (for a container: what its forward returns)
    module: nn.Module | None  # None for a functional operation (torch.flatten, +, torch.cat)
    alias: str | None = None  # "relu5_3", "fc7", "logits"...
    depth: int = 0  # how many containers enclose it (indentation in ``deconv layers``)

    @property
    def kind(self) -> str:
        if self.module is not None:
            return type(self.module).__name__
        target = self.node.target
        return target if isinstance(target, str) else getattr(target, "__name__", str(target))

    @property
    def is_container(self) -> bool:
        """A module whose forward runs other layers (its output is one of theirs)."""
        leaf = self.node.op == "call_module" and self.node.target == self.name.split(":")[0]
        return self.module is not None and not leaf


class _NamingTracer(fx.Tracer):
    """fx's tracer that also notes every module call, containers included, and what it returned."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, nn.Module, Any, int]] = []  # (path, module, result, first node index)
        self.scopes: list[str] = []

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        path = self.path_of_module(m)
        first = len(self.graph.nodes)
        self.scopes.append(path)
        try:
            result = super().call_module(m, forward, args, kwargs)
        finally:
            self.scopes.pop()
        self.calls.append((path, m, result, first))
        return result

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        node.meta["deconvnet_scope"] = self.scopes[-1] if self.scopes else ""
        return node

    def trace(self, root: Any, concrete_args: Any = None) -> fx.Graph:
        with autograd_functions_as_operations(
                lambda call, args, kwargs: self.create_proxy("call_function", call, args, kwargs),
                lambda args: any(isinstance(a, fx.Proxy) for a in tree_flatten(args)[0])):
            return super().trace(root, concrete_args)


class AutogradFunctionCall:
    """A custom torch.autograd.Function as one graph operation: its backward is the user's own,
    so the deconvnet has no rule for it (fx would otherwise trace into its forward)."""

    def __init__(self, function: type[torch.autograd.Function]) -> None:
        self.function = function
        self.__name__ = function.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function.apply(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{self.__name__}.apply"


@contextmanager
def autograd_functions_as_operations(
    make: Callable[[AutogradFunctionCall, tuple, dict], Any], traced: Callable[[Any], bool]
) -> Iterator[None]:
    """While active, ``Function.apply`` on ``traced`` arguments becomes ``make(call, args, kwargs)``."""
    original = torch.autograd.Function.__dict__["apply"]

    def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
        if traced((args, kwargs)):
            return make(AutogradFunctionCall(cls), args, kwargs)
        return original.__get__(None, cls)(*args, **kwargs)

    torch.autograd.Function.apply = classmethod(apply)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        torch.autograd.Function.apply = original  # type: ignore[method-assign]


class LayerGraph:
    """The traced data flow of ``model`` with a name for every operation and every module call.

    ``traced`` is a ready (graph, module calls) pair, as recorded from a real forward pass
    for a model that torch.fx cannot trace symbolically.

    >>> import torchvision
    >>> graph = LayerGraph(torchvision.models.vgg11())
    >>> graph.find("conv1_1").name, graph.find("features").node is graph.find("pool5").node
    ('features.0', True)
    """

    def __init__(self, model: nn.Module, traced: tuple[fx.Graph, list] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, received {type(model).__name__}")
        self.model = model
        if traced is None:
            tracer = _NamingTracer()
            try:
                self.graph = tracer.trace(model)
            except Exception as error:  # fx raises many types; all mean "not traceable"
                raise NotTraceable(
                    f"cannot trace {type(model).__name__} with torch.fx ({type(error).__name__}: {error})"
                ) from error
            calls = tracer.calls
        else:
            self.graph, calls = traced
        inputs = [n for n in self.graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise DeconvError(
                f"expected a model with one input tensor, received one whose forward takes {len(inputs)}"
            )
        self.input = inputs[0]
        self.dynamic = self._input_dependent()
        self.layers = self._name_layers(calls)
        self.outputs = self._output_fields()
        fields = dict(self.outputs)
        logits = fields.get("logits")
        if logits is None and self.outputs and self._is_classifier(self.outputs[0][1]):
            logits = self.outputs[0][1]  # the class scores come first (a tensor, a tuple, a dict)
        # "logits" names the class scores, and the model's other outputs take their field names
        # ("pooler_output"); each is the alias of the layer that computes it unless that layer has
        # a paper name already (VGG's fc8)
        names = {"logits": logits} if logits is not None else {}
        names.update((name, node) for name, node in self.outputs if name and name != "logits")
        taken = {layer.name for layer in self.layers} | {layer.alias for layer in self.layers if layer.alias}
        named = {name: self._leaf_of(node) for name, node in names.items() if name == "logits" or name not in taken}
        first_name: dict[str, str] = {}
        for name, leaf in named.items():
            first_name.setdefault(leaf.name, name)
        self.layers = [replace(l, alias=first_name[l.name]) if l.alias is None and not l.is_container
                       and l.name in first_name else l for l in self.layers]
        self._logits: Layer | None = self._leaf_of(logits) if logits is not None else None
        self._by_name = {layer.name: layer for layer in self.layers}
        self._by_alias = {layer.alias: layer for layer in self.layers if layer.alias}
        self._by_alias.update((name, self._by_name[leaf.name]) for name, leaf in named.items())
        self._by_node: dict[fx.Node, Layer] = {}
        for layer in self.layers:
            if not layer.is_container:
                self._by_node.setdefault(layer.node, layer)

    def _input_dependent(self) -> set[fx.Node]:
        dynamic = {self.input}
        for node in self.graph.nodes:
            if any(source in dynamic for source in node.all_input_nodes):
                dynamic.add(node)
        return dynamic

    def _name_layers(self, calls: list) -> list[Layer]:
        order = {node: index for index, node in enumerate(self.graph.nodes)}
        found: list[tuple[tuple, Layer]] = []
        uses: dict[str, int] = {}
        for path, module, result, first in calls:
            node = getattr(result, "node", None)
            if not isinstance(node, fx.Node) or not path:
                continue  # a container that returns several values, or none computed from tensors
            uses[path] = uses.get(path, 0) + 1
            name = path if uses[path] == 1 else f"{path}:{uses[path]}"
            leaf = node.op == "call_module" and node.target == path
            start = order[node] if leaf else min(first, order[node])
            found.append(((start, leaf, path.count(".")), Layer(name, node, module, depth=path.count("."))))
        for node in self.graph.nodes:
            if node.op in ("call_function", "call_method"):
                scope = node.meta.get("deconvnet_scope", "")
                depth = scope.count(".") + 1 if scope else 0
                found.append(((order[node], True, depth), Layer(node.name, node, None, depth=depth)))
        layers = [layer for _, layer in sorted(found, key=lambda item: item[0])]
        aliases = chain_aliases(layers)
        return [replace(layer, alias=aliases.get(layer.name)) for layer in layers]

    @property
    def logits(self) -> Layer | None:
        """The layer of the class scores (what ``find("logits")`` gives), None for a model without them."""
        return self._logits

    def output_node(self) -> fx.Node | None:
        """The node whose value the model returns, None when it returns several values or a constant."""
        return self.outputs[0][1] if len(self.outputs) == 1 and not self.outputs[0][0] else None

    def _output_fields(self) -> list[tuple[str, fx.Node]]:
        """What the model returns, computed from the input: ("", node) for a tensor, else one
        (field name, node) per tensor of a ModelOutput, dataclass, dict or tuple."""
        output = next(n for n in self.graph.nodes if n.op == "output")
        return [(name, node) for name, node in output_fields(output.args[0])
                if isinstance(node, fx.Node) and node in self.dynamic and node is not self.input
                and any(layer.node is node and not layer.is_container for layer in self.layers)]

    def _leaf_of(self, node: fx.Node) -> Layer:
        return next(layer for layer in reversed(self.layers) if layer.node is node and not layer.is_container)

    def _is_classifier(self, node: fx.Node) -> bool:
        """A model whose output is class scores: it ends in a fully connected layer or in pooled scores."""
        if any(isinstance(m, nn.Linear) for m in self.model.modules()):
            return True
        pooled = ("flatten", "view", "reshape", "squeeze", "mean", "Flatten", "AdaptiveAvgPool2d")
        return self._leaf_of(node).kind in pooled

    def find(self, name: str) -> Layer:
        """The layer called ``name`` (qualified name or alias); a DeconvError lists the valid ones."""
        layer = self._by_name.get(name) or self._by_alias.get(name)
        if layer is None:
            raise DeconvError(f"unknown layer {name!r}; {self.describe_names(near=name)}")
        return layer

    def layer_of(self, node: fx.Node) -> Layer | None:
        """The operation (not a container) that computes ``node``."""
        return self._by_node.get(node)

    def describe_names(self, near: str | None = None) -> str:
        """The valid names (a long list is shortened), and the closest ones to ``near``."""
        names = [f"{l.name} ({l.alias})" if l.alias else l.name for l in self.layers]
        names += [alias for alias, layer in self._by_alias.items() if layer.alias != alias]
        text = ", ".join(names) if len(names) <= 60 else (
            ", ".join(names[:30]) + f", ... {len(names) - 40} more ..., " + ", ".join(names[-10:])
            + " (deconv layers lists them all)")
        if near:
            close = difflib.get_close_matches(near, [l.name for l in self.layers] + list(self._by_alias), n=3)
            if close:
                text = f"did you mean {' or '.join(close)}? Valid layers: {text}"
                return text
        return f"Valid layers: {text}"

    def ancestors(self, node: fx.Node) -> list[fx.Node]:
        """Every node ``node`` depends on, itself included, in execution order."""
        return self.ancestors_of([node])

    def ancestors_of(self, nodes: list[fx.Node]) -> list[fx.Node]:
        """Every node the ``nodes`` depend on, themselves included, in execution order."""
        needed = set(nodes)
        for candidate in reversed(list(self.graph.nodes)):
            if candidate in needed:
                needed.update(candidate.all_input_nodes)
        return [n for n in self.graph.nodes if n in needed]


def output_fields(value: Any, name: str = "") -> list[tuple[str, Any]]:
    """The tensors (or fx nodes) in a model's returned value, each with its field name.

    A ModelOutput, dataclass or dict gives its fields' names ("logits"), a named tuple its
    fields, a plain tuple or list "output.0", "output.1"..., nested ones dotted
    ("hidden_states.2"); a lone tensor has the name "". Fields that are None are left out.

    >>> output_fields({"logits": torch.zeros(1), "extra": (torch.ones(1), None)})
    [('logits', tensor([0.])), ('extra.0', tensor([1.]))]
    """
    if isinstance(value, fx.Node) and value.op == "call_function" and isinstance(value.target, type) \
            and is_dataclass(value.target):  # fx traced the building of a returned dataclass
        return output_fields(dict(value.kwargs), name)
    if isinstance(value, (fx.Node, torch.Tensor)):
        return [(name, value)]
    items: Any
    if isinstance(value, Mapping):
        items = value.items()
    elif is_dataclass(value) and not isinstance(value, type):
        items = ((field.name, getattr(value, field.name)) for field in fields(value))
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        items = zip(value._fields, value)
    elif isinstance(value, (tuple, list)):
        name = name or "output"  # a bare index would read as a layer of an nn.Sequential
        items = enumerate(value)
    else:
        return []
    return [leaf for key, part in items for leaf in output_fields(part, f"{name}.{key}" if name else str(key))]


class NotTraceable(DeconvError):
    """torch.fx cannot trace the model symbolically (its forward branches on tensor values...)."""


def chain_aliases(layers: list[Layer]) -> dict[str, str]:
    """Readable names for AlexNet/VGG/ZFNet-style models: conv5_3, relu5_3, pool5, fc7...

    Blocks are counted by pooling layers. VGG's layers are convB_I and poolB; in
    AlexNet and ZFNet convolutions are numbered conv1..conv5 and a pool takes the
    number of the convolution before it.
    """
    aliases: dict[str, str] = {}
    layers = [l for l in layers if not l.is_container]
    features = [l for l in layers if l.name.startswith("features.")]
    classifier = [l for l in layers if l.name.startswith("classifier.")]
    # Only a plain chain of layers (AlexNet, VGG, ZFNet) has the paper's layer names.
    if features and all(l.name.count(".") == 1 for l in features + classifier):
        aliases.update(_feature_aliases(features, classifier))
    return aliases


def _feature_aliases(features: list[Layer], classifier: list[Layer]) -> dict[str, str]:
    blocks: list[list[Layer]] = [[]]
    for layer in features:
        blocks[-1].append(layer)
        if isinstance(layer.module, (nn.MaxPool2d, nn.AvgPool2d)):
            blocks.append([])
    convs_per_block = [sum(isinstance(l.module, nn.Conv2d) for l in b) for b in blocks]
    # VGG is built of 3x3 convolutions only; AlexNet and ZFNet start with a large kernel.
    vgg_style = all(l.module.kernel_size == (3, 3) for l in features if isinstance(l.module, nn.Conv2d))
    aliases: dict[str, str] = {}
    conv_count = 0
    for block_index, block in enumerate(blocks, start=1):
        in_block = 0
        for layer in block:
            if isinstance(layer.module, nn.Conv2d):
                conv_count += 1
                in_block += 1
            tag = f"{block_index}_{in_block}" if vgg_style else str(conv_count)
            if isinstance(layer.module, nn.Conv2d):
                aliases[layer.name] = f"conv{tag}"
            elif isinstance(layer.module, nn.ReLU):
                aliases[layer.name] = f"relu{tag}"
            elif isinstance(layer.module, nn.LocalResponseNorm):
                aliases[layer.name] = f"norm{tag}"
            elif isinstance(layer.module, (nn.MaxPool2d, nn.AvgPool2d)):
                aliases[layer.name] = f"pool{block_index if vgg_style else conv_count}"
    # Fully connected layers continue the numbering: fc6 follows conv5 (AlexNet) or block 5 (VGG).
    fc_number = sum(1 for n in convs_per_block if n) if vgg_style else conv_count
    first_fc = fc_number + 1  # a ReLU or Dropout before the first Linear takes no fc number
    for layer in classifier:
        if isinstance(layer.module, nn.Linear):
            fc_number += 1
            aliases[layer.name] = f"fc{fc_number}"
        elif isinstance(layer.module, nn.ReLU) and fc_number > first_fc - 1:
            aliases[layer.name] = f"relu{fc_number}"
        elif isinstance(layer.module, nn.Dropout) and fc_number > first_fc - 1:
            aliases[layer.name] = f"drop{fc_number}"
    return aliases
