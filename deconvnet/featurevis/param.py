"""Image parametrizations for feature visualization (Olah et al., "Feature Visualization", Distill 2017).

The Fourier parametrization optimizes the image's spectrum, each frequency scaled by 1/f so that
every scale moves at a similar speed (a natural image's spectrum falls as 1/f), and its colour in
a decorrelated space: the square root of ImageNet's colour correlation (Lucid's SVD sqrt), so that
one optimizer step changes luminance and colour as independent directions. Each parametrization is
a module whose parameters are the only tensors that require grad; calling it gives RGB in [0, 1].

Example:
    >>> import torch
    >>> image = FourierImage(2, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> image().shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

# Lucid's square root of the colour correlation of ImageNet (an SVD square root: C = S S^T, in RGB).
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]], dtype=torch.float64)
# Divided by its largest column norm, so that no decorrelated direction moves RGB by more than 1.
_MAX_COLUMN_NORM = float(COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max())
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / _MAX_COLUMN_NORM
# Lucid divides the inverse FFT by 4 so that a spectrum of std 0.01 starts as a faint grey image.
FOURIER_DIVISOR = 4.0
INIT_STD = 0.01


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> Tensor:
    """1 / max(f, 1/max(H, W)) ** decay_power for each frequency of a real 2-D FFT: (H, W // 2 + 1).

    ``f`` is the radial frequency in cycles per pixel; the floor keeps the constant term finite.

    >>> spectrum_scale(4, 4)[0]
    tensor([4., 4., 2.], dtype=torch.float64)
    """
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]  # (H, 1)
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]  # (1, W // 2 + 1)
    frequency = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / frequency.clamp(min=1.0 / max(height, width)) ** decay_power


Generators = torch.Generator | Sequence[torch.Generator] | None


def initial(batch: int, shape: tuple[int, ...], generator: Generators) -> Tensor:
    """``batch`` standard normal draws of ``shape`` times INIT_STD, on the CPU: (batch, *shape).

    One generator draws the whole batch; a sequence of ``batch`` generators draws image ``i``
    from ``generator[i]`` alone, so an image starts the same whichever images share its batch.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(batch, *shape, generator=generator) * INIT_STD
    if len(generator) != batch:
        raise ValueError(f"expected one generator per image ({batch}), received {len(generator)}")
    return torch.stack([torch.randn(*shape, generator=one) for one in generator]) * INIT_STD


def decorrelate_colour(x: Tensor) -> Tensor:
    """Decorrelated colour (N, 3, H, W) -> RGB: each pixel's 3-vector times ``COLOR_MATRIX``."""
    return torch.einsum("ij,njhw->nihw", COLOR_MATRIX.to(x), x)


class FourierImage(nn.Module):
    """A batch of images whose parameters are 1/f-scaled spectra in decorrelated colour.

    ``forward`` returns sigmoid(decorrelate(irfft2(scale * spectrum) / 4)), RGB in [0, 1], (N, 3, H, W).
    """

    scale: Tensor  # (H, W//2+1), a buffer

    def __init__(self, batch: int, height: int, width: int, *, decay_power: float = 1.0,
                 decorrelate: bool = True, generator: Generators = None) -> None:
        super().__init__()
        self.size = (height, width)
        self.decorrelate = decorrelate
        # (N, 3, H, W//2+1, 2): real and imaginary parts, drawn on the CPU so a seed means the same on any device
        self.spectrum = nn.Parameter(initial(batch, (3, height, width // 2 + 1, 2), generator))
        self.register_buffer("scale", spectrum_scale(height, width, decay_power).float(), persistent=False)

    def forward(self) -> Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale  # (N, 3, H, W//2+1)
        # "ortho" is Lucid's sqrt(H W) factor: the transform is unitary, so pixel-like learning rates apply
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / FOURIER_DIVISOR  # (N, 3, H, W)
        return torch.sigmoid(decorrelate_colour(x) if self.decorrelate else x)


class PixelImage(nn.Module):
    """A batch of images parametrized by their pixels.

    Without ``max_norm``: sigmoid(decorrelate(pixels)), RGB in [0, 1]. With ``max_norm`` (the
    bounded problem whose optimum has a closed form): 0.5 + max_norm * p / ||p|| per image, so the
    image is always on the sphere of that radius around mid grey and plain gradient steps on ``p``
    stay feasible without a projection.
    """

    def __init__(self, batch: int, height: int, width: int, *, decorrelate: bool = True,
                 max_norm: float | None = None, generator: Generators = None) -> None:
        super().__init__()
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be positive (or None for no bound), received {max_norm}")
        self.decorrelate = decorrelate
        self.max_norm = max_norm
        self.pixels = nn.Parameter(initial(batch, (3, height, width), generator))

    def forward(self) -> Tensor:
        x = decorrelate_colour(self.pixels) if self.decorrelate else self.pixels  # (N, 3, H, W)
        if self.max_norm is None:
            return torch.sigmoid(x)
        norm = x.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
        return 0.5 + self.max_norm * x / norm


PARAMS = ("fourier", "pixel")


def make_param(kind: str, batch: int, size: int, generator: Generators) -> nn.Module:
    """The parametrization called ``kind`` ("fourier" or "pixel") for ``batch`` images of ``size``;
    ``generator`` one for the batch, or one per image (see :func:`initial`)."""
    if kind == "fourier":
        return FourierImage(batch, size, size, generator=generator)
    if kind == "pixel":
        return PixelImage(batch, size, size, generator=generator)
    raise ValueError(f"unknown param {kind!r}: expected one of {', '.join(PARAMS)}, or an nn.Module "
                     f"that returns (N, 3, H, W) RGB in [0, 1]")

