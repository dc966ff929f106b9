"""The model as a graph of layers: tracing, layer names and readable aliases.

The deconvnet runs the model's own layers forward and their mirrors backward, so it
needs the model's data flow, not just its module tree. torch.fx gives that flow for
plain chains and for residual or concatenating networks alike; the user's model is
only read, never changed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch.fx as fx
from torch import nn

from .errors import DeconvError


@dataclass(frozen=True)
class Layer:
    """One operation of the traced model that a user can name."""

    name: str  # qualified module name ("features.29"), with ":2" for a module's second use
    node: fx.Node
    module: nn.Module | None  # None for a functional operation (torch.flatten, +, torch.cat)
    alias: str | None = None  # "relu5_3", "fc7", ...

    @property
    def kind(self) -> str:
        if self.module is not None:
            return type(self.module).__name__
        target = self.node.target
        return target if isinstance(target, str) else getattr(target, "__name__", str(target))


class LayerGraph:
    """The traced data flow of ``model`` with a name for every operation.

    >>> import torchvision
    >>> graph = LayerGraph(torchvision.models.vgg11())
    >>> graph.find("conv1_1").name
    'features.0'
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, received {type(model).__name__}")
        try:
            self.graph = fx.Tracer().trace(model)
        except Exception as error:  # fx raises many types; all mean "not traceable"
            raise DeconvError(
                f"cannot trace {type(model).__name__} with torch.fx ({type(error).__name__}: {error}). "
                "The deconvnet needs a forward() without data-dependent Python control flow."
            ) from error
        self.model = model
        inputs = [n for n in self.graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise DeconvError(
                f"expected a model with one input tensor, received one whose forward takes {len(inputs)}"
            )
        self.input = inputs[0]
        self.layers = self._name_layers()
        self._by_name = {layer.name: layer for layer in self.layers}
        self._by_alias = {layer.alias: layer for layer in self.layers if layer.alias}
        self._by_node = {layer.node: layer for layer in self.layers}

    def _name_layers(self) -> list[Layer]:
        uses: dict[str, int] = {}
        layers = []
        for node in self.graph.nodes:
            if node.op == "call_module":
                uses[node.target] = uses.get(node.target, 0) + 1
                count = uses[node.target]
                name = node.target if count == 1 else f"{node.target}:{count}"
                layers.append(Layer(name, node, self.model.get_submodule(node.target)))
            elif node.op in ("call_function", "call_method"):
                layers.append(Layer(node.name, node, None))
        aliases = chain_aliases(layers)
        return [Layer(l.name, l.node, l.module, aliases.get(l.name)) for l in layers]

    def find(self, name: str) -> Layer:
        """The layer called ``name`` (qualified name or alias); a DeconvError lists the valid ones."""
        layer = self._by_name.get(name) or self._by_alias.get(name)
        if layer is None:
            raise DeconvError(f"unknown layer {name!r}; {self.describe_names(near=name)}")
        return layer

    def layer_of(self, node: fx.Node) -> Layer | None:
        return self._by_node.get(node)

    def describe_names(self, near: str | None = None) -> str:
        """The valid names (a long list is shortened), and the closest ones to ``near``."""
        names = [f"{l.name} ({l.alias})" if l.alias else l.name for l in self.layers]
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
        needed = {node}
        for candidate in reversed(list(self.graph.nodes)):
            if candidate in needed:
                needed.update(candidate.all_input_nodes)
        return [n for n in self.graph.nodes if n in needed]


def chain_aliases(layers: list[Layer]) -> dict[str, str]:
    """Readable names for AlexNet/VGG/ZFNet-style models: conv5_3, relu5_3, pool5, fc7...

    Blocks are counted by pooling layers. VGG's layers are convB_I and poolB; in
    AlexNet and ZFNet convolutions are numbered conv1..conv5 and a pool takes the
    number of the convolution before it.
    """
    aliases: dict[str, str] = {}
    linear = [l for l in layers if isinstance(l.module, nn.Linear)]
    features = [l for l in layers if l.name.startswith("features.")]
    classifier = [l for l in layers if l.name.startswith("classifier.")]
    # Only a plain chain of layers (AlexNet, VGG, ZFNet) has the paper's layer names.
    if features and all(l.name.count(".") == 1 for l in features + classifier):
        aliases.update(_feature_aliases(features, classifier))
    if linear:
        aliases.setdefault(linear[-1].name, "logits")
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
