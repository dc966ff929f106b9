"""Preprocessing that belongs to a model's weights, and its inverse for display."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from .images import to_rgb


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> model input (3, H, W): resize the shorter side, centre-crop, normalize.

    ``scale`` is the value of white (1 for torchvision weights, 255 for Caffe-style
    weights); ``mean``/``std`` are in the model's channel order, which is BGR when
    ``bgr`` is set.

    >>> t = ImageTransform(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    >>> t(Image.new("RGB", (300, 400))).shape
    torch.Size([3, 224, 224])
    """

    resize: int | None = 256
    crop: int | None = 224
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    bgr: bool = False

    def __call__(self, image: Image.Image) -> Tensor:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL.Image, received {type(image).__name__}")
        if image.mode != "RGB":
            image = to_rgb(image)
        if self.resize:
            image = TF.resize(image, self.resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if self.crop:
            image = TF.center_crop(image, self.crop)
        x = TF.pil_to_tensor(image).float() / 255.0  # (3, H, W) RGB in 0..1
        if self.bgr:
            x = x.flip(0)
        return (x * self.scale - self._column(self.mean)) / self._column(self.std)

    @staticmethod
    def _column(values) -> Tensor:
        return torch.tensor(values, dtype=torch.float32).view(3, 1, 1)

    @property
    def input_size(self) -> tuple[int, int]:
        side = self.crop or self.resize or 224
        return (side, side)

    def to_uint8(self, x: Tensor) -> np.ndarray:
        """A model input (3, H, W) back to an RGB uint8 picture (H, W, 3)."""
        rgb = self.as_rgb((x.detach().float().cpu() * self._column(self.std) + self._column(self.mean)) / self.scale)
        return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()

    def as_rgb(self, x: Tensor) -> Tensor:
        """Channels in RGB order, for showing a projection in the input's colours."""
        return x.flip(-3) if self.bgr else x

    def describe(self) -> dict:
        return asdict(self)
