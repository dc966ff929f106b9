"""ZFNet: the network of Zeiler & Fergus (ECCV 2014, Fig. 3), for users who trained one.

No pretrained ZFNet weights are published; load your own state dict with
``load_model("zfnet", weights="zfnet.safetensors")``.
"""

from __future__ import annotations

from torch import Tensor, nn


def upper_layers(inputs: int, width: int, outputs: int) -> list[nn.Module]:
    """ZFNet's conv3, conv4, conv5 (3x3, padding 1, each with its ReLU) and the last pool (3x3/2, rounding up).

    >>> [type(m).__name__ for m in upper_layers(4, 8, 4)][::2]
    ['Conv2d', 'Conv2d', 'Conv2d', 'MaxPool2d']
    """
    return [nn.Conv2d(inputs, width, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, outputs, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)]


class ZFNet(nn.Module):
    """224x224 input -> conv1 7x7/2 (110x110) -> pool 3x3/2 (55) -> conv2 5x5/2 (26) -> pool (13)
    -> conv3, conv4, conv5 3x3 (13) -> pool (6) -> fc6, fc7 4096 -> fc8.

    Pools round up (Caffe's rule), which gives the paper's 55, 13 and 6. The contrast
    normalization after the first two pools is a LocalResponseNorm.

    >>> import torch
    >>> ZFNet()(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    """

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1),  # (N, 96, 110, 110)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # (N, 96, 55, 55)
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.Conv2d(96, 256, kernel_size=5, stride=2),  # (N, 256, 26, 26)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # (N, 256, 13, 13)
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            *upper_layers(256, 384, 256),  # conv3..conv5 (N, 256, 13, 13), pool5 (N, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))  # (N, 256, 6, 6)
        return self.classifier(x.flatten(1))
