"""A tiny CNN and a small image folder for the top-9 tests (shared with their subprocess scripts).

The weights are small integers and the inputs are the pixel values 0..255, so every sum
the network computes is an integer below 2**24: exact in float32 whatever the batch size
or summation order. Identical images therefore tie exactly, wherever they are scanned.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from deconvnet.models import LoadedModel
from deconvnet.models.transforms import ImageTransform

SIZE = 32
TRANSFORM = ImageTransform(resize=SIZE, crop=SIZE, scale=255.0)  # inputs are exactly 0..255


class TinyNet(nn.Module):
    """features: conv1_1 (features.0), relu1_1, pool1, conv2_1 (features.3), relu2_1 (features.4)."""

    def __init__(self, head: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(6 * (SIZE // 2) ** 2, 5) if head else None

    def forward(self, x):
        x = self.features(x)
        if self.head is not None:
            x = self.head(torch.flatten(x, 1))
        return x


def tiny_model(head: bool = False) -> LoadedModel:
    """The same integer-weighted net in every process."""
    generator = torch.Generator().manual_seed(0)
    model = TinyNet(head)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randint(-2, 3, parameter.shape, generator=generator).float())
    return LoadedModel("tiny", model.eval(), TRANSFORM, "random")


def make_images(root: Path) -> list[Path]:
    """16 readable images (two identical), plus broken and non-image files; returns the readable ones, sorted."""
    rng = np.random.default_rng(1)
    (root / "sub").mkdir(parents=True)
    good = []
    for i in range(12):
        pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        picture = Image.fromarray(pixels)
        if i % 2:  # some shapes on the noise
            draw = ImageDraw.Draw(picture)
            x, y = (int(v) for v in rng.integers(0, SIZE - 8, 2))
            draw.rectangle([x, y, x + 8, y + 6], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        path = root / ("sub" if i % 3 == 0 else "") / f"img_{i:02d}.png"
        picture.save(path)
        good.append(path)
    twin = Image.fromarray(np.full((SIZE, SIZE, 3), 250, np.uint8))
    ImageDraw.Draw(twin).ellipse([4, 4, 20, 24], fill=(10, 200, 30))
    for name in ("dup_a.png", "dup_b.png"):
        twin.save(root / name)
        good.append(root / name)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "sub" / "photo.jpg", quality=90)
    good.append(root / "sub" / "photo.jpg")
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "odd name & <x>.png")
    good.append(root / "odd name & <x>.png")
    # Broken files: a truncated JPEG, random bytes named .png, and a text file.
    data = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data, format="JPEG")
    (root / "truncated.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (root / "sub" / "noise.png").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (root / "notes.txt").write_text("not an image\n")
    return sorted(good)
