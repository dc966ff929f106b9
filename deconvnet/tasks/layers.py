"""The table behind ``deconv layers``: every layer's name, alias, type, output shape and field.

Containers (a ResNet stage, a block, a SqueezeNet Fire module) are layers too: their output
is what their forward returns. With ``tree=True`` names are indented under their container.
"""

from __future__ import annotations

import os

import torch

from ..engine.features import FeatureExtractor
from ..engine.validate import check_integer
from ..models import DEFAULT_MODEL, LoadedModel, resolve_model


def layer_table(
    model: str | LoadedModel = DEFAULT_MODEL, *, weights: str | os.PathLike | None = None, size: int | None = None,
    tree: bool = False,
) -> list[tuple[str, str, str, str, str, str]]:
    """Rows of (name, alias, type, output shape, receptive field size, stride) at the model's input size.

    ``tree`` indents each name by two spaces per enclosing container.

    >>> layer_table("vgg16-hed")[0]                                          # doctest: +SKIP
    ('features.0', 'conv1_1', 'Conv2d', '64x224x224', '3x3', '1')
    """
    loaded = resolve_model(model, weights)
    if size is not None:
        size = check_integer(size, "size", minimum=1, maximum=4096, meaning="the input side in pixels")
    height, width = (size, size) if size is not None else loaded.transform.input_size
    with FeatureExtractor(loaded.model) as dn:
        empty = torch.zeros(0, 3, height, width)  # an empty batch: shapes only
        dn.follow(empty)  # a model recorded from real forward passes: the path of this input
        names = [layer.name for layer in dn.graph.layers]
        outputs = dn.activations(empty, names)
        rows = []
        for layer in dn.graph.layers:
            value = outputs[layer.name]
            shape = "x".join(map(str, value.shape[1:])) if isinstance(value, torch.Tensor) else "-"
            field = dn.receptive_field(layer.name)
            extent = "whole input" if field.size is None else f"{field.size[0]}x{field.size[1]}"
            stride = "-" if field.size is None else (
                str(field.stride[0]) if field.stride[0] == field.stride[1] else f"{field.stride[0]}x{field.stride[1]}")
            name = "  " * layer.depth + layer.name if tree else layer.name
            rows.append((name, layer.alias or "", layer.kind, shape, extent, stride))
    return rows
