"""The windowed projection (only the receptive field runs) equals the full-image projection."""

import functools

import pytest
import torch
import torchvision
from torch import nn

import deconvnet
from test_networks import randomized_batchnorm
from tolerance import assert_same_projection, network_sums


class DilatedStrided(nn.Module):
    """Strided and dilated convolutions, a ceil-mode overlapping pool, zero padding and a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2, groups=8)
        self.relu3 = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(self.pad(x))))
        x = self.relu2(self.conv2(x)) + x
        return self.relu3(self.conv3(x))


CASES = [
    # (model, input size, layer) - strides, overlapping and ceil-mode pools, residual paths, dilated
    # and grouped convolutions, depthwise ones with ReLU6, channel concatenation, SE gates
    ("dilated", 45, "relu3"), ("dilated", 45, "relu2"), ("mobilenet_v2", 64, "features.6.conv.2"),
    ("mobilenet_v3_small", 64, "features.4.block.3.0"),
    ("vgg11_bn", 64, "features.11"),
    ("alexnet", 99, "features.5"),
    ("zfnet", 99, "features.8"),
    ("resnet18", 72, "layer2.1.relu:2"),
    ("squeezenet1_1", 67, "features.7.expand3x3"),
]


@functools.lru_cache(maxsize=None)
def build(name):
    torch.manual_seed(0)
    if name == "dilated":
        return DilatedStrided().eval()
    model = deconvnet.ZFNet() if name == "zfnet" else torchvision.models.get_model(name, weights=None)
    return randomized_batchnorm(model).eval()


@pytest.mark.parametrize("mode", ["deconvnet", "guided"])
@pytest.mark.parametrize("name,size,layer", CASES)
def test_cropped_equals_full(name, size, layer, mode):
    model = build(name)
    torch.manual_seed(3)
    x = torch.rand(3, 3, size, size + 5)  # not square: rows and columns both checked
    with deconvnet.Deconvnet(model) as dn:
        _, channels, height, width = dn.activations(x, [layer])[layer].shape
        # corners, borders and the middle, two units sharing an image, one image left out
        units = [(0, 1, (0, 0)), (0, 2, (height // 2, width // 2)), (1, channels - 1, (height - 1, width - 1)),
                 (1, 0, (0, width - 1)), (2, 3, (height - 1, 1))]
        assert_equals_full_pass(dn, x, layer, units, mode)


def assert_equals_full_pass(dn, x, layer, units, mode):
    """The default path (cone forward where proven faithful, else the full forward; backward over
    the cones) against the full pass.

    The units' values are the model's own, bit for bit: the forward either is the full pass or has
    been shown to add in its order (engine/faithful.py). The maps come from backward passes over
    boxes instead of whole maps, which add the same products in another order (tests/tolerance.py)."""
    fast = dn.project_units(x, layer, units, mode=mode)
    full = dn.project_units(x, layer, units, mode=mode, crop=False)
    assert [u.value for u in fast.units] == [u.value for u in full.units]
    assert_same_projection(fast.maps, full.maps, **network_sums(dn.model))


def test_projection_is_zero_outside_the_receptive_field():
    model = build("vgg11_bn")
    x = torch.rand(1, 3, 64, 64)
    with deconvnet.Deconvnet(model) as dn:
        for position in [(0, 0), (4, 5), (7, 7)]:
            full = dn.project_units(x, "features.11", [(0, 4, position)], mode="backprop", crop=False).maps[0]
            top, left, h, w = dn.box("features.11", position, (64, 64)).clipped(64, 64)
            outside = full.clone()
            outside[:, top:top + h, left:left + w] = 0
            assert outside.abs().max() == 0
            assert full[:, top:top + h, left:left + w].abs().max() > 0
