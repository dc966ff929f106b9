"""Sanity checks of the maps: do they depend on the model's weights, the unit and the class?

Three published results ask for evidence before a map is trusted:

* Mahendran & Vedaldi, "Salient deconvolutional networks" (ECCV 2016): the switches and
  masks of the forward pass carry most of a deconvnet picture, so different units of one
  layer give similar maps of one image.
* Adebayo et al., "Sanity checks for saliency maps" (NeurIPS 2018): re-initializing a
  classifier's weights from the top layer down (cascading randomization) changes the
  gradient's map but barely changes guided backpropagation's.
* Nie, Zhang & Patel, "A theoretical explanation for perplexing behaviors of
  backpropagation-based visualizations" (ICML 2018): guided backpropagation and the
  deconvnet mostly reconstruct the image, so different classes give nearly the same map.

``sanity_check`` measures all of this for one target (a unit's channel, or a class
score) over a batch of images, in every mode, with the measures of deconvnet.tasks.sanity.similarity.
It works on a deep copy of the model: the user's model is only read.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
...                             torch.nn.ReLU()).eval()
>>> result = sanity_check(model, torch.rand(2, 3, 16, 16), layer="3", channel=1, progress=False)
>>> result.steps, result.cascading["backprop"]["spearman_abs"].shape
(['2', '0'], (2, 2))
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn
from tqdm import tqdm

from ...engine import Deconvnet
from ...engine.relu import MODES, check_mode
from ...engine.validate import check_channel, check_integer, is_integer
from ...errors import DeconvError
from .similarity import MEASURES, ReducedMap, compare, reduce_map, require_analysis

GROUPINGS = ("auto", "layer", "block")
AUTO_BLOCK_LIMIT = 30  # more parameterized layers than this: "auto" randomizes whole blocks
DEFAULT_BATCH_SIZE = 8
TOP1 = "top1"  # channel= value for a classifier: each image's own top-1 class
SEED_MODULE = "sanity_random_seed"  # the extra layer that spreads a random seed over the target layer


# ------------------------------------------------------------------- the steps


@dataclass(frozen=True)
class RandomizationStep:
    """One step of the randomization: these modules get re-initialized together."""

    name: str  # the layer's alias or name, or the block's name
    modules: tuple[str, ...]  # qualified module names, in forward order


def _is_norm(module: nn.Module) -> bool:
    return "Norm" in type(module).__name__


def _block_of(name: str) -> str:
    """The residual block or stage a module belongs to: the path up to its first numeric part
    that is not its own last part ('_blocks.3._expand_conv' -> '_blocks.3', 'layer2.1.conv1' ->
    'layer2.1'); a module of a plain sequence ('features.28') is its own block."""
    parts = name.split(".")
    for index, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return name


def _ancestors(target: fx.Node) -> set[fx.Node]:
    needed, stack = {target}, [target]
    while stack:
        for source in stack.pop().all_input_nodes:
            if source not in needed:
                needed.add(source)
                stack.append(source)
    return needed


def randomization_steps(model: nn.Module, layer: str, grouping: str = "auto",
                        input_size: tuple[int, int] | None = None) -> list[RandomizationStep]:
    """The randomization steps for a target at ``layer``, top (the target's layer) first.

    Every module on the target's path that has parameters and a ``reset_parameters`` is
    randomized. With ``grouping="layer"`` each convolution or linear layer is one step and
    takes the normalization layers that follow it along; ``"block"`` randomizes one
    residual block or stage per step (see ``_block_of``); ``"auto"`` chooses "layer" up to
    30 steps and "block" beyond (EfficientNet-Lite0 has 80 parameterized layers, 19 blocks).
    A model recorded from a real forward pass (a Hugging Face model) needs ``input_size``.

    >>> import torchvision
    >>> [s.name for s in randomization_steps(torchvision.models.vgg11().eval(), "relu2_1")]
    ['conv2_1', 'conv1_1']
    """
    if grouping not in GROUPINGS:
        raise DeconvError(f"unknown grouping {grouping!r}: expected one of {', '.join(GROUPINGS)}")
    with Deconvnet(model) as dn:
        if input_size is not None:
            dn.follow_size(input_size)
        target = dn.layer(layer)
        needed = _ancestors(target.node)
        names: list[str] = []
        for node in target.node.graph.nodes:
            if node in needed and node.op == "call_module" and node.target not in names:
                module = model.get_submodule(node.target)
                if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False)):
                    names.append(node.target)
        if not names:
            raise DeconvError(f"layer {target.name} has no layer with parameters below it, so there is nothing "
                              f"to randomize; choose a layer after the first convolution")
        steps: list[list[str]] = []
        for name in names:
            if steps and _is_norm(model.get_submodule(name)) and not _is_norm(model.get_submodule(steps[-1][0])):
                steps[-1].append(name)  # a normalization layer goes with the layer it normalizes
            else:
                steps.append([name])
        if grouping == "block" or (grouping == "auto" and len(steps) > AUTO_BLOCK_LIMIT):
            blocks: list[list[str]] = []
            for step in steps:
                if blocks and _block_of(blocks[-1][0]) == _block_of(step[0]):
                    blocks[-1].extend(step)
                else:
                    blocks.append(list(step))
            return [RandomizationStep(_block_of(b[0]), tuple(b)) for b in reversed(blocks)]
        return [RandomizationStep(dn.layer(s[0]).alias or s[0], tuple(s)) for s in reversed(steps)]


def _step_seed(seed: int, step: int) -> int:
    """A seed for step ``step`` of a run seeded ``seed``, far from the small seeds (0, 1, ...) that
    built the model itself: torch.manual_seed(0) would re-create a model made after that same call."""
    digest = hashlib.sha256(f"deconvnet.tasks.sanity.compute:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _randomize(model: nn.Module, step: RandomizationStep, seed: int) -> None:
    """Re-initialize the step's modules in place with their own default initializers, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in step.modules:
            model.get_submodule(name).reset_parameters()  # type: ignore[operator]


# ------------------------------------------------------------------ the result


Scores = dict[str, np.ndarray]  # measure -> values


@dataclass
class SanityResult:
    """Every number of a sanity check; arrays are indexed [image] or [image, step], NaN where a map is empty.

    ``cascading[mode][measure][i, k]`` compares image i's map after randomizing steps 0..k
    with its map from the intact model; ``independent`` after randomizing step k alone.
    ``selectivity[mode][comparison][measure][i]`` compares the target's map with another
    channel's ("other_channel") and with a random seed's over the whole layer
    ("random_seed"); ``classes`` (classifiers only) the top-1 class's map with a random
    other class's ("random_class") and the lowest-scoring class's ("lowest_class").
    """

    layer: str
    alias: str | None
    classifier: bool
    modes: tuple[str, ...]
    images: list[str]
    channels: list[int]  # the target channel (class) per image
    steps: list[str]
    step_modules: list[list[str]]
    grouping: str
    seed: int
    cascading: dict[str, Scores]
    independent: dict[str, Scores]
    selectivity: dict[str, dict[str, Scores]]
    classes: dict[str, dict[str, Scores]] | None
    other_channels: list[int]
    class_choices: dict[str, list[int]] | None  # "top1", "random_class", "lowest_class" -> per image
    example: int  # the image whose maps are kept for the figures
    example_maps: dict[str, dict[str, np.ndarray]] = field(repr=False)  # mode -> "intact", step names, ... -> (H, W)
    inactive: list[int] = field(default_factory=list)  # images where the target's activation is 0: empty maps
    seconds: float = 0.0
    model: str | None = None
    target_name: str | None = None  # the class's name, for a named class

    def mean(self, scores: np.ndarray) -> np.ndarray:
        """The mean over images, ignoring empty maps (NaN)."""
        with np.errstate(all="ignore"):
            finite = np.isfinite(scores)
            return np.where(finite.any(0), np.nansum(scores, 0) / np.maximum(finite.sum(0), 1), np.nan)

    def summary(self) -> list[str]:
        """One line per mode: the rank correlation after randomizing everything (or as deep as the
        maps stay non-empty: a randomized plain network can silence the target), and selectivity."""
        means = {mode: self.mean(self.cascading[mode]["spearman_abs"]) for mode in self.modes}
        finite = [k for k in range(len(self.steps)) if all(np.isfinite(means[m][k]) for m in self.modes)]
        depth = finite[-1] if finite else len(self.steps) - 1
        if depth == len(self.steps) - 1:
            where = f"after randomizing all {len(self.steps)} steps"
        else:
            where = (f"after randomizing {depth + 1} of {len(self.steps)} steps (down to {self.steps[depth]}; deeper, "
                     f"the target is silent and its maps empty)")
        lines = []
        for mode in self.modes:
            others = ", ".join(f"{m}: {means[m][depth]:.2f}" for m in self.modes if m != mode)
            line = (f"{mode}: {where}, rank correlation with the intact map "
                    f"{means[mode][depth]:.2f}" + (f" ({others})" if others else ""))
            chosen = self.selectivity[mode]
            line += (f"; another channel's map {float(self.mean(chosen['other_channel']['spearman_abs'])):.2f}, "
                     f"a random seed's {float(self.mean(chosen['random_seed']['spearman_abs'])):.2f}")
            if self.classes is not None:
                random_class = float(self.mean(self.classes[mode]["random_class"]["spearman_abs"]))
                lowest = float(self.mean(self.classes[mode]["lowest_class"]["spearman_abs"]))
                line += f"; top-1 class vs a random class {random_class:.2f}, vs the lowest {lowest:.2f}"
            lines.append(line)
        return lines

    def to_json(self) -> dict[str, Any]:
        """Every number, NaN as null."""

        def clean(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                return clean(value.tolist())
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        def means(table: dict[str, Scores]) -> dict:
            return {mode: {m: self.mean(s) for m, s in per.items()} for mode, per in table.items()}

        return clean({
            "model": self.model, "layer": self.layer, "alias": self.alias, "classifier": self.classifier,
            "target_name": self.target_name, "modes": list(self.modes), "measures": list(MEASURES),
            "images": self.images, "channels": self.channels, "inactive": self.inactive,
            "seed": self.seed, "grouping": self.grouping,
            "steps": [{"name": n, "modules": m} for n, m in zip(self.steps, self.step_modules)],
            "seconds": round(self.seconds, 2),
            "cascading": {"per_image": self.cascading, "mean": means(self.cascading)},
            "independent": {"per_image": self.independent, "mean": means(self.independent)},
            "selectivity": {"other_channels": self.other_channels, "per_image": self.selectivity,
                            "mean": {mode: means(per) for mode, per in self.selectivity.items()}},
            "classes": None if self.classes is None else {
                "choices": self.class_choices, "per_image": self.classes,
                "mean": {mode: means(per) for mode, per in self.classes.items()}},
            "summary": self.summary(),
        })


# --------------------------------------------------------------- the check


def _scores(count: int, steps: int | None = None) -> Scores:
    shape = (count,) if steps is None else (count, steps)
    return {m: np.full(shape, np.nan) for m in MEASURES}


def _random_seed_model(model: nn.Module, node_name: str, features: int, seed: int,
                       recorded: fx.Graph | None = None) -> nn.Module:
    """``model`` up to the target layer, then one output unit sum_i r_i a_i with r_i random in (0, 1).

    Projecting that unit seeds the target layer with r (times the unit's value): a seed
    of random positive values over the whole layer, through the same switches and masks.
    The result shares ``model``'s modules; nothing is added to ``model`` itself. A model that
    torch.fx cannot trace (a Hugging Face model) gives the graph recorded from its forward pass.
    """
    graph = recorded if recorded is not None else fx.Tracer().trace(model)
    target = next(node for node in graph.nodes if node.name == node_name)
    needed = _ancestors(target)
    cut = fx.Graph()
    copies: dict[fx.Node, fx.Node] = {}
    attributes: dict[str, Any] = {}
    for node in graph.nodes:
        if node in needed:
            copies[node] = cut.node_copy(node, lambda n: copies[n])
            if node.op == "get_attr":
                value: Any = model
                for part in str(node.target).split("."):
                    value = getattr(value, part)
                attributes[str(node.target)] = value
    mix = nn.Linear(features, 1, bias=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mix.weight.copy_(torch.rand(1, features, generator=generator) + 1e-3)  # strictly positive
    flat = cut.call_function(torch.flatten, (copies[target], 1))
    cut.output(cut.call_module(SEED_MODULE, (flat,)))
    root = {**dict(model.named_modules()), **attributes, SEED_MODULE: mix}
    return fx.GraphModule(root, cut).eval()


class _Projector:
    """Projects one unit per image in every mode, in batches, and reduces the maps to 2-D."""

    def __init__(self, x: Tensor, modes: Sequence[str], batch_size: int, bar: tqdm) -> None:
        self.x, self.modes, self.batch_size, self.bar = x, modes, batch_size, bar
        self.one_dimensional: set[str] = set()  # layers without positions: no forward pass to find them

    def __call__(self, model: nn.Module, layer: str, channels: Sequence[int]) -> dict[str, list[ReducedMap]]:
        maps: dict[str, list[ReducedMap]] = {mode: [] for mode in self.modes}
        with Deconvnet(model) as dn:
            for start in range(0, self.x.shape[0], self.batch_size):
                batch = self.x[start:start + self.batch_size]
                chosen = [int(c) for c in channels[start:start + batch.shape[0]]]
                positions = [None] * len(chosen) if layer in self.one_dimensional else (
                    _strongest(dn, batch, layer, chosen))
                if positions[0] is None:
                    self.one_dimensional.add(layer)
                units = [(i, c, positions[i]) for i, c in enumerate(chosen)]
                for mode in self.modes:
                    projection = dn.project_units(batch, layer, units, mode=mode)
                    maps[mode].extend(reduce_map(m) for m in projection.maps)  # (C, H, W) each
                    self.bar.update(batch.shape[0])
        return maps


def _strongest(dn: Deconvnet, batch: Tensor, layer: str, channels: list[int]) -> list[tuple[int, int] | None]:
    """The position of each image's channel's strongest unit (None for a 1-D layer).

    Knowing it lets the engine project from the input window that feeds the unit only (2x
    faster at VGG16's relu5_3, 7x at relu3_3); one forward pass serves all the modes.
    """
    activation = dn.activations(batch, [layer])[layer]  # (B, K, H, W) or (B, K)
    if activation.dim() != 4:
        return [None] * len(channels)
    positions: list[tuple[int, int] | None] = []
    for image, channel in enumerate(channels):
        plane = activation[image, channel]
        positions.append(divmod(int(plane.argmax()), plane.shape[1]))  # the first maximum, row-major
    return positions


def sanity_check(
    model: nn.Module,
    x: Tensor,
    *,
    layer: str,
    channel: int | str,
    modes: Sequence[str] = MODES,
    grouping: str = "auto",
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    example: int = 0,
    images: Sequence[str] | None = None,
    independently: bool = True,
    progress: bool = True,
) -> SanityResult:
    """Cascading and independent randomization, unit selectivity and class sensitivity of the maps.

    The target is ``channel`` of ``layer``: for a feature map, the channel's strongest unit
    on each image (in each randomized model too); for a 1-D layer such as a classifier's
    ``logits``, that unit, or each image's top-1 class with ``channel="top1"``. ``x`` is a
    batch of model inputs (N, C, H, W). Randomization re-initializes the modules of each
    step (``randomization_steps``) with their own ``reset_parameters``, seeded by ``seed``
    and the step's index, so cascading and independent randomization use the same weights
    for a step and a run is reproducible. A class-sensitivity check is added when the
    target layer is 1-D (class scores). ``independently=False`` skips the independent
    randomization (``independent`` is then empty), which halves the work.

    >>> loaded = deconvnet.load("efficientnet-lite0")                               # doctest: +SKIP
    >>> r = sanity_check(loaded.model, x, layer="logits", channel="top1")           # doctest: +SKIP
    >>> print("\\n".join(r.summary()))                                              # doctest: +SKIP
    """
    require_analysis()  # fail before the work, not after it
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, received {type(model).__name__}")
    if model.training:
        raise DeconvError("the model is in training mode (dropout and batch statistics would change the maps): "
                          "call model.eval() first")
    for mode in modes:
        check_mode(mode)
    if not modes:
        raise DeconvError(f"expected at least one mode among {', '.join(MODES)}")
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[0] < 1:
        raise DeconvError(f"expected a batch of images (N, C, H, W), received "
                          f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    batch_size = check_integer(batch_size, "batch_size", minimum=1)
    count = x.shape[0]
    if not 0 <= example < count:
        raise DeconvError(f"example must index one of the {count} images (0..{count - 1}), received {example}")
    started = time.perf_counter()
    working = copy.deepcopy(model)  # randomization changes weights: never the user's model
    steps = randomization_steps(working, layer, grouping, (x.shape[-2], x.shape[-1]))
    with Deconvnet(working) as dn:
        dn.follow(x[:1])
        target = dn.layer(layer)
        scores = torch.cat([dn.activations(x[start:start + batch_size], [target.name])[target.name].float()
                            for start in range(0, count, batch_size)])  # (N, K) or (N, K, H, W)
    if scores.dim() not in (2, 4):
        raise DeconvError(f"expected layer {target.name} to output (N, C) or (N, C, H, W), "
                          f"received shape {tuple(scores.shape)}")
    classifier = scores.dim() == 2
    width = scores.shape[1]
    channels = _target_channels(channel, scores, target.name)
    strongest = scores[torch.arange(count), torch.tensor(channels)].reshape(count, -1).amax(1)  # (N,)
    inactive = [i for i in range(count) if float(strongest[i]) == 0.0]
    generator = torch.Generator().manual_seed(seed)
    other_channels = [_other(c, width, generator) for c in channels]
    class_choices = None
    if classifier:
        top1 = scores.argmax(1).tolist()
        class_choices = {"top1": top1, "random_class": [_other(c, width, generator) for c in top1],
                         "lowest_class": scores.argmin(1).tolist()}

    projections = 1 + (2 if independently else 1) * len(steps) + 2 + (2 if classifier else 0)
    if class_choices is not None and channels != class_choices["top1"]:
        projections += 1
    bar = tqdm(total=projections * len(modes) * count, desc="sanity", unit="map", disable=not progress, leave=False)
    project = _Projector(x, modes, batch_size, bar)
    example_maps: dict[str, dict[str, np.ndarray]] = {mode: {} for mode in modes}

    def compared(reference: dict[str, list[ReducedMap]], other: dict[str, list[ReducedMap]],
                 into: dict[str, Scores], column: int | None, key: str) -> None:
        for mode in modes:
            for i in range(count):
                for measure, value in compare(reference[mode][i], other[mode][i]).items():
                    if column is None:
                        into[mode][measure][i] = value
                    else:
                        into[mode][measure][i, column] = value
            example_maps[mode][key] = other[mode][example].absolute

    try:
        with torch.no_grad():
            intact = project(working, target.name, channels)
            for mode in modes:
                example_maps[mode]["intact"] = intact[mode][example].absolute

            cascading = {mode: _scores(count, len(steps)) for mode in modes}
            independent = {mode: _scores(count, len(steps)) for mode in modes} if independently else {}
            pristine = copy.deepcopy(working.state_dict())
            for k, step in enumerate(steps):
                _randomize(working, step, _step_seed(seed, k))
                compared(intact, project(working, target.name, channels), cascading, k, f"cascading:{step.name}")
            working.load_state_dict(pristine)
            for k, step in enumerate(steps if independently else []):
                _randomize(working, step, _step_seed(seed, k))
                compared(intact, project(working, target.name, channels), independent, k,
                         f"independent:{step.name}")
                working.load_state_dict(pristine)

            selectivity = {mode: {"other_channel": _scores(count), "random_seed": _scores(count)} for mode in modes}
            compared(intact, project(working, target.name, other_channels),
                     {mode: selectivity[mode]["other_channel"] for mode in modes}, None, "other_channel")
            features = int(np.prod(scores.shape[1:]))
            seeded = _random_seed_model(working, target.node.name, features, seed,
                                        dn.graph.graph if dn.concrete and dn.graph is not None else None)
            compared(intact, project(seeded, SEED_MODULE, [0] * count),
                     {mode: selectivity[mode]["random_seed"] for mode in modes}, None, "random_seed")

            classes = None
            if class_choices is not None:
                classes = {mode: {"random_class": _scores(count), "lowest_class": _scores(count)} for mode in modes}
                top = intact if channels == class_choices["top1"] else (
                    project(working, target.name, class_choices["top1"]))
                for mode in modes:
                    example_maps[mode]["top1"] = top[mode][example].absolute
                for key in ("random_class", "lowest_class"):
                    compared(top, project(working, target.name, class_choices[key]),
                             {mode: classes[mode][key] for mode in modes}, None, key)
    finally:
        bar.close()
    return SanityResult(
        layer=target.name, alias=target.alias, classifier=classifier, modes=tuple(modes),
        images=list(images) if images is not None else [str(i) for i in range(count)], channels=channels,
        steps=[s.name for s in steps], step_modules=[list(s.modules) for s in steps], grouping=grouping, seed=seed,
        cascading=cascading, independent=independent, selectivity=selectivity, classes=classes,
        other_channels=other_channels, class_choices=class_choices, example=example, example_maps=example_maps,
        inactive=inactive,
        seconds=time.perf_counter() - started,
    )


def _other(channel: int, width: int, generator: torch.Generator) -> int:
    """A channel other than ``channel``, uniformly at random (the same one for a channel if only one other)."""
    if width < 2:
        raise DeconvError("the target layer has a single channel, so there is no other unit to compare with")
    pick = int(torch.randint(width - 1, (1,), generator=generator))
    return pick + (pick >= channel)


def _target_channels(channel: int | str, scores: Tensor, layer: str) -> list[int]:
    width = scores.shape[1]
    if channel == TOP1:
        if scores.dim() != 2:
            raise DeconvError(f"channel {TOP1!r} (each image's top-1 class) needs class scores of shape (N, classes), "
                              f"but layer {layer} has shape {tuple(scores.shape)}; give a channel number")
        return scores.argmax(1).tolist()
    if not is_integer(channel):
        raise DeconvError(f"expected a channel number or {TOP1!r}, received {channel!r}")
    return [check_channel(layer, channel, width)] * scores.shape[0]

