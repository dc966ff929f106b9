"""A small ZFNet-shaped network (Zeiler & Fergus, ECCV 2014, Fig. 3) that trains on a CPU in minutes.

It exists so that the evolution of features over training (the paper's Fig. 4) can be
seen on a real training run: ``scripts/train_tiny.py`` trains it on generated shapes
and textures and saves a checkpoint per epoch; ``--model tiny-zfnet --weights FILE``
loads one.
"""

from __future__ import annotations

from torch import Tensor, nn

from .transforms import ImageTransform
from .zfnet import upper_layers

TINY_SIDE = 64
TINY_TRANSFORM = ImageTransform(resize=TINY_SIDE, crop=TINY_SIDE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
TINY_CLASSES = 8


class TinyZFNet(nn.Module):
    """64x64 input -> conv1 7x7/2 (30x30) -> pool 3x3/2 (15) -> conv2 5x5/2 (6) -> pool (3)
    -> conv3, conv4, conv5 3x3 (3) -> pool (1) -> fc6 64 -> fc7 (classes).

    ZFNet's layout with fewer channels and a smaller input; pools round up, as in ZFNet.

    >>> import torch
    >>> TinyZFNet()(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 8])
    """

    def __init__(self, *, num_classes: int = TINY_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=7, stride=2, padding=1),  # (N, 16, 30, 30)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # (N, 16, 15, 15)
            nn.Conv2d(16, 32, kernel_size=5, stride=2),  # (N, 32, 6, 6)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # (N, 32, 3, 3)
            *upper_layers(32, 48, 32),  # conv3..conv5 (N, 32, 3, 3), pool5 (N, 32, 1, 1)
        )
        self.classifier = nn.Sequential(
            nn.Linear(32, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))
