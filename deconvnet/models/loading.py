"""Loading a model by name: its published weights, a local file, or random weights; and the helpers
the timm and Hugging Face loaders share."""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch import nn

from ..errors import DeconvError
from .loaded import LoadedModel
from .registry import DEFAULT_MODEL, MODELS, RANDOM
from .weights import load_state_file


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
