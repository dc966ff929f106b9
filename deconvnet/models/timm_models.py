"""timm's image models by name (``timm:resnet50``), with the preprocessing and labels of their weights.

timm is an optional dependency (``pip install 'deconvnet[timm]'``), imported only when a
``timm:`` model is loaded.
"""

from __future__ import annotations

import difflib
import math
import os
from typing import Any, Mapping

from ..errors import DeconvError
from .loaded import LoadedModel
from .loading import build_seeded, first_line, import_optional
from .registry import RANDOM
from .transforms import INTERPOLATIONS, ImageTransform
from .weights import load_state_file

PREFIX = "timm:"
DEFAULT_CROP_PCT = 0.875  # timm's, when a pretrained config gives none


def load_timm(name: str, weights: str | os.PathLike | None = None) -> LoadedModel:
    """The timm model ``name`` ("resnet50", "convnext_tiny.fb_in22k") with timm's pretrained weights
    (None, through timm's own loader and cache), a local checkpoint, or ``"random"``.

    >>> loaded = load_timm("resnet18", weights="random")                 # doctest: +SKIP
    >>> loaded.transform.interpolation, loaded.categories[281]           # doctest: +SKIP
    ('bilinear', 'tabby')
    """
    timm = import_optional("timm", "timm")
    check_name(timm, name)
    label = PREFIX + name
    if weights is None:
        try:
            model = timm.create_model(name, pretrained=True)
        except (OSError, RuntimeError, ValueError) as error:  # the hub's errors are OSErrors
            raise DeconvError(
                f"could not get timm's pretrained weights for {name} ({first_line(error)}); with no network "
                f"and nothing cached, pass a local checkpoint with --weights FILE, or --weights {RANDOM} "
                f"for an untrained model") from error
        config = model.pretrained_cfg
        source, digest = f"timm:{config.get('architecture', name)}.{config.get('tag', '')}".rstrip("."), None
    elif str(weights) == RANDOM:
        model, source, digest = build_seeded(lambda: timm.create_model(name, pretrained=False)), RANDOM, None
    else:
        model = timm.create_model(name, pretrained=False)
        source, digest = load_state_file(model, weights)
    transform = timm_transform(timm.data.resolve_model_data_config(model), name)
    return LoadedModel(label, model.eval(), transform, source, digest, categories=imagenet_names(timm, model))


def check_name(timm: Any, name: str) -> None:
    """An unknown architecture or pretrained tag, with the closest known names."""
    if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        return  # timm finds these itself
    if not timm.is_model(name):
        architecture = name.split(".")[0]
        known = timm.list_models()
        close = difflib.get_close_matches(architecture, known, n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise DeconvError(f"unknown timm model {name!r}{hint} (timm.list_models() lists all {len(known)})")
    if "." in name and name not in timm.list_pretrained(name):
        architecture = name.split(".")[0]
        tags = timm.list_pretrained(f"{architecture}.*")
        raise DeconvError(f"timm has no pretrained weights tagged {name!r}; known for {architecture}: "
                          f"{', '.join(tags) or 'none'}")


def timm_transform(config: Mapping[str, Any], name: str = "the model") -> ImageTransform:
    """timm's evaluation transform for a data config (``timm.data.resolve_model_data_config``), as
    ``timm.data.create_transform(**config)`` builds it: resize to input size / crop_pct, centre-crop,
    normalize, with its interpolation.

    >>> t = timm_transform({"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.95,
    ...                     "crop_mode": "center", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})
    >>> t.resize, t.crop, t.interpolation
    (235, 224, 'bicubic')
    """
    channels, height, width = config["input_size"]
    mean, std = tuple(config["mean"]), tuple(config["std"])
    interpolation = config.get("interpolation", "bilinear")
    mode = config.get("crop_mode") or "center"
    if channels != 3 or len(mean) != 3 or len(std) != 3:
        raise DeconvError(f"{name} takes {channels}-channel input; deconvnet feeds RGB pictures (3 channels)")
    if interpolation not in INTERPOLATIONS:
        raise DeconvError(f"{name}'s data config asks for interpolation {interpolation!r}; deconvnet knows "
                          f"{', '.join(INTERPOLATIONS)}")
    crop_pct = config.get("crop_pct") or DEFAULT_CROP_PCT
    scaled = (math.floor(height / crop_pct), math.floor(width / crop_pct))  # timm's rounding
    if height != width or mode not in ("center", "squash"):
        raise DeconvError(f"{name}'s data config crops with crop_mode {mode!r} at input size {height}x{width}, "
                          f"which deconvnet does not reproduce (it does 'center' and 'squash' at a square size)")
    if mode == "squash":
        return ImageTransform(resize=None, resize_to=scaled, crop=height, mean=mean, std=std,  # type: ignore[arg-type]
                              interpolation=interpolation)
    return ImageTransform(resize=scaled[0], crop=height, mean=mean, std=std,  # type: ignore[arg-type]
                          interpolation=interpolation)  # resize: the shorter side, as torchvision's Resize(int)


def imagenet_names(timm: Any, model: Any) -> list[str] | None:
    """ImageNet-1k class names (each description's first name: 'tabby') when the model's label set is
    ImageNet-1k and it has 1000 outputs; None otherwise."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    if infer_imagenet_subset(model) != "imagenet-1k" or getattr(model, "num_classes", None) != 1000:
        return None
    return [description.split(",")[0].strip() for description in ImageNetInfo("imagenet-1k").label_descriptions()]
