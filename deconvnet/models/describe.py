"""How a loaded model is described and fed, for the tasks that share it: the label of its weights
in a figure's title (filters, invariance), and the model-input value of a mid-grey pixel (the
occluder of occlusion and correspondence).

>>> from deconvnet.models import IMAGENET_TRANSFORM
>>> mid_grey(IMAGENET_TRANSFORM)
tensor([0.0741, 0.2052, 0.4265])
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from torch import Tensor

if TYPE_CHECKING:
    from .loaded import LoadedModel
    from .transforms import ImageTransform

GREY_RGB = 128


def weights_label(loaded: LoadedModel, published: bool) -> str:
    """'published weights', 'random weights' or 'weights <file>', for a figure's title."""
    if loaded.weights == "random":
        return "random weights"
    if published or loaded.weights == "shipped" or loaded.weights.startswith("torchvision:"):
        return "published weights"
    return f"weights {Path(loaded.weights).name}"


def mid_grey(transform: ImageTransform) -> Tensor:
    """The model-input value (3,) of a mid-grey pixel (RGB 128, 128, 128), through ``transform``.

    >>> from deconvnet.models import IMAGENET_TRANSFORM
    >>> mid_grey(IMAGENET_TRANSFORM)
    tensor([0.0741, 0.2052, 0.4265])
    """
    pixel = Image.new("RGB", (1, 1), (GREY_RGB,) * 3)
    return dataclasses.replace(transform, resize=None, crop=None)(pixel)[:, 0, 0]
