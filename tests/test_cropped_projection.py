"""The windowed projection (only the receptive field runs) equals the full-image projection."""

import functools

import pytest
import torch
import torchvision

import deconvnet
from test_networks import randomized_batchnorm
from tolerance import assert_same_projection, network_sums

CASES = [
    # (model, input size, layer) - strides, overlapping and ceil-mode pools, residual paths
    ("vgg11_bn", 64, "features.11"),
    ("alexnet", 99, "features.5"),
    ("zfnet", 99, "features.8"),
    ("resnet18", 72, "layer2.1.relu:2"),
    ("squeezenet1_1", 67, "features.7.expand3x3"),
]


@functools.lru_cache(maxsize=None)
def build(name):
    torch.manual_seed(0)
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
        cropped = dn.project_units(x, layer, units, mode=mode, crop=True)
        full = dn.project_units(x, layer, units, mode=mode, crop=False)
    assert [u.value for u in cropped.units] == pytest.approx([u.value for u in full.units], rel=1e-4, abs=1e-5)
    # the window and the full image are different convolution sizes: their kernels sum in other orders
    assert_same_projection(cropped.maps, full.maps, **network_sums(model))


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
