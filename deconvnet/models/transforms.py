"""Preprocessing that belongs to a model's weights, and its inverse for display."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

# How each library resamples, by filter name (PIL's, and torchvision's InterpolationMode values).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
RESAMPLERS = ("pil", "tensor")
CROP_ROUNDINGS = ("round", "floor")
# The fields added after the first release, with the values that keep the old behaviour: describe()
# leaves them out at these values, so the records (and cache keys) of existing runs stay the same.
_LATER_DEFAULTS = {"resize_to": None, "interpolation": "bilinear", "resampler": "pil", "crop_rounding": "round"}



def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; transparency is composed onto white, 16/32-bit gray is scaled to 0..255."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> model input (3, H, W): resize, centre-crop, normalize.

    ``resize`` is the shorter side, ``resize_to`` (instead) an exact (height, width) that ignores
    the aspect ratio, ``crop`` the side of the centre square. ``scale`` is the value of white (1
    for torchvision weights, 255 for Caffe-style weights); ``mean``/``std`` are in the model's
    channel order, which is BGR when ``bgr`` is set. The last three fields reproduce other
    libraries' preprocessing exactly: ``interpolation`` is the resampling filter; ``resampler``
    "pil" resizes with PIL (torchvision and timm on a PIL image), "tensor" with torchvision on
    the uint8 tensor (Hugging Face's torchvision image processors); ``crop_rounding`` places an
    odd margin's extra pixel as torchvision does ("round") or as Hugging Face does ("floor").

    >>> t = ImageTransform(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    >>> t(Image.new("RGB", (300, 400))).shape
    torch.Size([3, 224, 224])
    >>> ImageTransform(resize=None, resize_to=(240, 320), crop=None, interpolation="bicubic")(
    ...     Image.new("RGB", (50, 60))).shape
    torch.Size([3, 240, 320])
    """

    resize: int | None = 256
    crop: int | None = 224
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    bgr: bool = False
    resize_to: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    resampler: str = "pil"
    crop_rounding: str = "round"

    def __post_init__(self) -> None:
        for name, value, valid in (("interpolation", self.interpolation, INTERPOLATIONS),
                                   ("resampler", self.resampler, RESAMPLERS),
                                   ("crop_rounding", self.crop_rounding, CROP_ROUNDINGS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(valid)}")
        if self.resize and self.resize_to:
            raise ValueError("give resize (the shorter side) or resize_to (height, width), not both")

    def __call__(self, image: Image.Image) -> Tensor:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL.Image, received {type(image).__name__}")
        if image.mode != "RGB":
            image = to_rgb(image)
        window = self._crop_window(image.size)
        if window is not None and self.crop:  # a very long image: resize only the part the crop keeps
            pixels = TF.pil_to_tensor(image.resize((self.crop, self.crop), self._pil_filter, box=window))
        else:
            pixels = self._center_crop(self._resized(image))
        x = pixels.float() / 255.0  # (3, H, W) RGB in 0..1
        if self.bgr:
            x = x.flip(0)
        return (x * self.scale - self._column(self.mean)) / self._column(self.std)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of a ``width`` x ``height`` image after the resize step.

        ``resize``: the shorter side becomes ``resize`` and the longer ``int(resize * long / short)``
        (torchvision's rounding); ``resize_to``: exactly that size; neither: unchanged.

        >>> ImageTransform(resize=256, crop=224).resized_size(400, 300)
        (341, 256)
        >>> ImageTransform(resize=None, resize_to=(240, 320), crop=None).resized_size(50, 60)
        (320, 240)
        """
        if self.resize_to:
            return self.resize_to[1], self.resize_to[0]
        if not self.resize:
            return width, height
        short, long = min(width, height), max(width, height)
        long = int(self.resize * long / short)
        return (self.resize, long) if width <= height else (long, self.resize)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, width, height) of the centre crop in a resized picture of ``width`` x ``height``.

        A crop larger than the picture has a negative corner: the crop pads the picture there.

        >>> ImageTransform(resize=256, crop=224).crop_box(341, 256)
        (58, 16, 224, 224)
        """
        if not self.crop:
            return 0, 0, width, height
        side = self.crop
        if side > min(width, height):  # torchvision pads a short side by (side - size) // 2 before
            left = -((side - width) // 2) if side > width else int(round((width - side) / 2.0))
            top = -((side - height) // 2) if side > height else int(round((height - side) / 2.0))
        elif self.crop_rounding == "round":  # torchvision's centre_crop
            left, top = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
        else:
            left, top = (width - side) // 2, (height - side) // 2
        return left, top, side, side

    @property
    def _pil_filter(self) -> Image.Resampling:
        return Image.Resampling[self.interpolation.upper()]

    def _resized(self, image: Image.Image) -> Tensor:
        """The image resized as the transform's library does it, as a uint8 tensor (3, H, W)."""
        if not (self.resize or self.resize_to):
            return TF.pil_to_tensor(image)
        width, height = self.resized_size(*image.size)
        size = [height, width]
        mode = TF.InterpolationMode(self.interpolation)
        if self.resampler == "pil":
            return TF.pil_to_tensor(TF.resize(image, size, interpolation=mode, antialias=True))
        from torchvision.transforms.v2 import functional as F2  # Hugging Face's processors resize with v2

        return F2.resize(TF.pil_to_tensor(image), size, interpolation=mode, antialias=True)

    def _center_crop(self, pixels: Tensor) -> Tensor:
        if not self.crop:
            return pixels
        side = self.crop
        if side > min(pixels.shape[-2:]):
            return TF.center_crop(pixels, [side, side])  # torchvision's padding
        left, top, _, _ = self.crop_box(pixels.shape[-1], pixels.shape[-2])
        return pixels[:, top:top + side, left:left + side]

    def _crop_window(self, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
        """Where the centre crop falls in the original image, when resizing all of it would be wasteful.

        Resizing a 50000x2 strip's short side to 224 would make an image of 5.6 million by 224
        pixels, gigabytes for a 100 kB file. Resizing only the window the crop keeps gives the
        same pixels (the same bilinear filter at the same scale and sample positions), up to
        rounding: a value may differ by 1 in 255.
        """
        if not (self.resize and self.crop) or self.crop_rounding != "round":
            return None
        width, height = size
        new_width, new_height = self.resized_size(width, height)
        if max(new_width, new_height) <= 4 * self.crop or self.crop > self.resize:
            return None  # ordinary shapes take the plain path
        left, top, _, _ = self.crop_box(new_width, new_height)
        scale_x, scale_y = width / new_width, height / new_height
        return (left * scale_x, top * scale_y, (left + self.crop) * scale_x, (top + self.crop) * scale_y)

    @staticmethod
    def _column(values) -> Tensor:
        return torch.tensor(values, dtype=torch.float32).view(3, 1, 1)

    @property
    def input_size(self) -> tuple[int, int]:
        if self.resize_to and not self.crop:
            return self.resize_to
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
        return {key: value for key, value in asdict(self).items() if _LATER_DEFAULTS.get(key, ...) != value}
