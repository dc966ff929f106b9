"""The loaded model every task takes: the network in eval mode, its transform and where its weights came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .transforms import ImageTransform


@dataclass
class LoadedModel:
    """A model in eval mode with everything needed to feed it and to report on it."""

    name: str
    model: nn.Module
    transform: ImageTransform
    weights: str  # "shipped", "random", "torchvision:<enum>", or the file path
    weights_sha256: str | None = None
    categories: list[str] | None = field(default=None, repr=False)
