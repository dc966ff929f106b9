"""Preprocessing that belongs to a model's weights, and its inverse for display."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from ..dataset.images import to_rgb


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
        window = self._crop_window(image.size)
        if window is not None and self.crop:  # a very long image: resize only the part the crop keeps
            image = image.resize((self.crop, self.crop), Image.Resampling.BILINEAR, box=window)
        else:
            if self.resize:
                image = TF.resize(image, self.resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            if self.crop:
                image = TF.center_crop(image, self.crop)
        x = TF.pil_to_tensor(image).float() / 255.0  # (3, H, W) RGB in 0..1
        if self.bgr:
            x = x.flip(0)
        return (x * self.scale - self._column(self.mean)) / self._column(self.std)

    def _crop_window(self, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
        """Where the centre crop falls in the original image, when resizing all of it would be wasteful.

        Resizing a 50000x2 strip's short side to 224 would make an image of 5.6 million by 224
        pixels, gigabytes for a 100 kB file. Resizing only the window the crop keeps gives the
        same pixels (the same bilinear filter at the same scale and sample positions), up to
        rounding: a value may differ by 1 in 255.
        """
        if not (self.resize and self.crop):
            return None
        width, height = size
        short, long = min(width, height), max(width, height)
        new_long = int(self.resize * long / short)  # torchvision's rounding
        if new_long <= 4 * self.crop or self.crop > self.resize:
            return None  # ordinary shapes take the plain path
        new_width, new_height = (self.resize, new_long) if width <= height else (new_long, self.resize)
        top = int(round((new_height - self.crop) / 2.0))  # torchvision's centre_crop
        left = int(round((new_width - self.crop) / 2.0))
        scale_x, scale_y = width / new_width, height / new_height
        return (left * scale_x, top * scale_y, (left + self.crop) * scale_x, (top + self.crop) * scale_y)

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
