"""Hugging Face image classifiers (``hf:microsoft/resnet-50``, ``hf:./my-finetuned-model``), with
their image processor's preprocessing and their ``id2label`` class names.

transformers is an optional dependency (``pip install 'deconvnet[hf]'``), imported only when an
``hf:`` model is loaded. A model returns an ``ImageClassifierOutput``; the engine names its
``logits`` field (engine/graph.py), so ``layer="logits"`` and class names work as for any classifier.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from ..errors import DeconvError
from .loaded import LoadedModel
from .loading import build_seeded, first_line, import_optional
from .registry import RANDOM
from .transforms import ImageTransform
from .weights import load_state_file

PREFIX = "hf:"
# A processor's pixel values and ours may differ by float rounding (the processor fuses rescale and
# normalize); one step of a uint8 pixel is about 1/255/std >= 4e-3, far above this.
REPRODUCED_WITHIN = 1e-4


def load_hf(source: str, weights: str | os.PathLike | None = None) -> LoadedModel:
    """The image classifier in folder or hub id ``source``, with its own weights (None), a local
    state dict, or ``"random"`` (the architecture of its config.json, untrained).

    >>> loaded = load_hf("./my-finetuned-model")                         # doctest: +SKIP
    >>> loaded.categories                                                # doctest: +SKIP
    ['cat', 'dog']
    """
    transformers = import_optional("transformers", "hf")
    folder = Path(source).expanduser()
    local = folder.is_dir()
    if not local:
        _check_hub_id(source, folder)
    else:
        if not (folder / "config.json").is_file():
            raise DeconvError(f"{folder} is not a Hugging Face model folder: it has no config.json "
                              f"(write one with model.save_pretrained(folder))")
        source = str(folder)
    with _quiet(transformers), _reported(source, local):
        if weights is None:
            model = transformers.AutoModelForImageClassification.from_pretrained(source)
            identity, digest = f"hf:{source}", None
        else:
            config = transformers.AutoConfig.from_pretrained(source)
            build = lambda: transformers.AutoModelForImageClassification.from_config(config)  # noqa: E731
            if str(weights) == RANDOM:
                model, identity, digest = build_seeded(build), RANDOM, None
            else:
                model = build()
                identity, digest = load_state_file(model, weights)
        processor = _processor(transformers, source, local)
    transform = processor_transform(processor, source)
    return LoadedModel(f"hf:{source}", model.eval(), transform, identity, digest,
                       categories=class_names(model.config.id2label))


def _check_hub_id(source: str, folder: Path) -> None:
    if folder.exists():
        raise DeconvError(f"expected a folder written by save_pretrained or a hub id, received the file {folder}")
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source:
        raise DeconvError(f"no such folder: {folder} (hf: takes a folder written by save_pretrained, "
                          f"or a hub id such as microsoft/resnet-50)")


@contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """No progress bars from transformers while loading (the command reports what it loaded)."""
    logging = transformers.utils.logging
    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()


@contextmanager
def _reported(source: str, local: bool) -> Iterator[None]:
    """transformers' errors as one line saying what to do."""
    try:
        yield
    except DeconvError:
        raise
    except OSError as error:
        if local:
            raise DeconvError(f"cannot load the model in {source}: {first_line(error)}") from error
        raise DeconvError(
            f"could not get {source} from the Hugging Face hub ({first_line(error)}); with no network, "
            f"save it once with save_pretrained and pass the folder: --model hf:FOLDER") from error
    except (ValueError, KeyError, TypeError) as error:  # not an image classifier transformers knows
        raise DeconvError(f"{source} is not an image-classification model transformers can load "
                          f"({first_line(error)})") from error


def _processor(transformers: Any, source: str, local: bool) -> Any:
    if local and not (Path(source) / "preprocessor_config.json").is_file():
        raise DeconvError(
            f"{source} has no image processor (preprocessor_config.json), so its preprocessing is unknown: "
            f"save the processor the model was trained with into the folder, e.g. "
            f"AutoImageProcessor.from_pretrained('microsoft/resnet-50').save_pretrained({source!r})")
    return transformers.AutoImageProcessor.from_pretrained(source)


def class_names(id2label: dict | None) -> list[str] | None:
    """The labels in index order; None when there are none or they are transformers' placeholders.

    >>> class_names({0: "tabby", 1: "dog"}), class_names({0: "LABEL_0", 1: "LABEL_1"})
    (['tabby', 'dog'], None)
    """
    if not id2label:
        return None
    labels = {int(index): str(label) for index, label in id2label.items()}
    if sorted(labels) != list(range(len(labels))) or all(labels[i] == f"LABEL_{i}" for i in labels):
        return None
    return [labels[i] for i in range(len(labels))]


def processor_transform(processor: Any, source: str = "the model") -> ImageTransform:
    """An image processor's resize, centre crop, rescale and normalize as an ImageTransform,
    checked against the processor on a test picture (a DeconvError if it does something else)."""
    transform = _transform_of(processor, source)
    picture = _test_picture()
    expected = processor(images=picture, return_tensors="pt")["pixel_values"][0].float()
    ours = transform(picture)
    if ours.shape != expected.shape or float((ours - expected).abs().max()) > REPRODUCED_WITHIN:
        difference = (f"shape {tuple(ours.shape)} vs {tuple(expected.shape)}" if ours.shape != expected.shape
                      else f"values differ by up to {float((ours - expected).abs().max()):.3g}")
        raise DeconvError(f"the image processor of {source} ({type(processor).__name__}) preprocesses pictures "
                          f"in a way deconvnet does not reproduce ({difference})")
    return transform


def _transform_of(processor: Any, source: str) -> ImageTransform:
    size = _size_dict(getattr(processor, "size", None))
    resize: int | None = None
    resize_to: tuple[int, int] | None = None
    crop: int | None = None
    if getattr(processor, "do_resize", False):
        shortest, crop_pct = size.get("shortest_edge"), getattr(processor, "crop_pct", None)
        if shortest and crop_pct and shortest < 384:  # ConvNeXt's processor: resize to shortest/crop_pct, crop
            resize, crop = int(shortest / crop_pct), shortest
        elif shortest and crop_pct:  # ... and at 384 or more it squashes to a square
            resize_to = (shortest, shortest)
        elif shortest and not size.get("longest_edge"):
            resize = shortest
        elif size.get("height") and size.get("width"):
            resize_to = (size["height"], size["width"])
        else:
            raise DeconvError(f"the image processor of {source} resizes to {size}, which deconvnet does not "
                              f"reproduce (it does shortest_edge, or height and width)")
    if getattr(processor, "do_center_crop", False):
        crop_size = _size_dict(getattr(processor, "crop_size", None))
        height, width = crop_size.get("height"), crop_size.get("width")
        if not height or height != width or crop is not None:
            raise DeconvError(f"the image processor of {source} centre-crops in a way deconvnet does not "
                              f"reproduce (crop_size {crop_size}; it does square crops)")
        crop = height
    factor = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else 1.0
    offset = 1.0 if getattr(processor, "rescale_offset", False) and getattr(processor, "do_rescale", False) else 0.0
    normalize = getattr(processor, "do_normalize", False)
    mean = _triple(processor.image_mean) if normalize else (0.0, 0.0, 0.0)
    std = _triple(processor.image_std) if normalize else (1.0, 1.0, 1.0)
    if getattr(processor, "include_top", False):  # EfficientNet's processor divides by std once more
        std = tuple(s * once for s, once in zip(std, _triple(processor.image_std)))  # type: ignore[assignment]
    resample = getattr(processor, "resample", None)
    interpolation = Image.Resampling(resample).name.lower() if resample is not None else "bilinear"
    return ImageTransform(resize=resize, resize_to=resize_to, crop=crop, mean=tuple(m + offset for m in mean),  # type: ignore[arg-type]
                          std=std, scale=255.0 * factor, interpolation=interpolation,
                          resampler="tensor" if getattr(processor, "backend", "") == "torchvision" else "pil",
                          crop_rounding="floor")


def _size_dict(size: Any) -> dict:
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    items = size.items() if hasattr(size, "items") else vars(size).items()
    return {key: value for key, value in items if value is not None}


def _triple(values: Any) -> tuple[float, float, float]:
    values = [float(values)] * 3 if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(values) != 3:
        raise DeconvError(f"expected a mean and std for 3 channels, received {values}")
    return (values[0], values[1], values[2])


def _test_picture() -> Image.Image:
    """A small picture with detail at every scale and odd sides (it exercises resampling and cropping)."""
    generator = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 83)[None, :, None] * np.ones((61, 1, 3))
    noise = generator.integers(0, 256, size=(61, 83, 3))
    return Image.fromarray(((ramp + noise) / 2).astype(np.uint8))

