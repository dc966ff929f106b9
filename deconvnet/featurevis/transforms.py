"""Transformation robustness for feature visualization (Olah et al., "Feature Visualization", Distill 2017).

Every step sees the image padded, jittered, rescaled and rotated by a small random amount, so the
optimum must keep activating the unit under all of them: this suppresses the high-frequency
patterns that fool a network but no eye. The draws come from a ``torch.Generator`` (seeded), one
draw per step for the whole batch; every operation is differentiable in the image.

Example:
    >>> import torch
    >>> steps = standard_transforms()
    >>> apply(steps, torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0)).shape[:2]
    torch.Size([2, 3])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Transform = Callable[[Tensor, torch.Generator], Tensor]


def _pick(values: Sequence[float], generator: torch.Generator) -> float:
    return float(values[int(torch.randint(len(values), (1,), generator=generator))])


@dataclass(frozen=True)
class Pad:
    """Pad by ``pixels`` on every side with ``value`` (mid grey: the border carries no feature)."""

    pixels: int
    value: float = 0.5

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return F.pad(x, (self.pixels,) * 4, value=self.value)


@dataclass(frozen=True)
class Jitter:
    """Crop a random window ``pixels`` smaller than the image (a shift of 0..pixels-1 each way)."""

    pixels: int

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        height, width = x.shape[-2:]
        dy, dx = (int(v) for v in torch.randint(self.pixels, (2,), generator=generator))
        return x[..., dy:dy + height - self.pixels + 1, dx:dx + width - self.pixels + 1]


@dataclass(frozen=True)
class RandomScale:
    """Resize by a factor drawn from ``factors`` (bilinear)."""

    factors: tuple[float, ...]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        factor = _pick(self.factors, generator)
        height, width = x.shape[-2:]
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class RandomRotate:
    """Rotate about the centre by an angle in degrees drawn from ``degrees`` (bilinear, border kept)."""

    degrees: tuple[float, ...]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        angle = math.radians(_pick(self.degrees, generator))
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def standard_transforms() -> list[Transform]:
    """Lucid's (and lucent's) ``standard_transforms``: pad 12, jitter 8, scale 0.9..1.1, rotate +-10 deg, jitter 4."""
    return [Pad(12), Jitter(8), RandomScale(tuple(1 + (i - 5) / 50 for i in range(11))),
            RandomRotate(tuple(float(d) for d in range(-10, 11))), Jitter(4)]


def apply(transforms: Sequence[Transform], x: Tensor, generator: torch.Generator) -> Tensor:
    """``x`` (N, 3, H, W) through ``transforms`` in order, the random draws taken from ``generator``."""
    for transform in transforms:
        x = transform(x, generator)
    return x
