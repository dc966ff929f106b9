"""The cone-restricted backward pass (engine/cones.py) equals the full pass and autograd."""

import functools

import pytest
import torch
import torchvision
from torch import nn

import deconvnet
from deconvnet.engine.cones import plan_cones
from deconvnet.engine.relu import RULES
from reference import autograd_projection
from test_networks import randomized_batchnorm

# float32: the box's transposed convolutions add the same products as the full map's but the
# kernels may group them differently (AVX2 vs AVX-512, direct vs im2col), so equal up to
# accumulation order: 1e-4 relative to the map's scale over a dozen layers of sums.
RTOL, ATOL_SCALE = 1e-4, 1e-5


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


@functools.lru_cache(maxsize=None)
def build(name):
    torch.manual_seed(0)
    if name == "dilated":
        return DilatedStrided().eval()
    return randomized_batchnorm(torchvision.models.get_model(name, weights=None)).eval()


CASES = [
    # (model, input size, layer): strided, dilated and grouped convolutions, residual sums,
    # depthwise convolutions with ReLU6, channel concatenation, SE gates (exact adjoints on the
    # whole map), fully connected layers (no cone)
    ("dilated", 45, "relu3"),
    ("dilated", 45, "relu2"),
    ("mobilenet_v2", 64, "features.6.conv.2"),
    ("mobilenet_v3_small", 64, "features.4.block.3.0"),
    ("squeezenet1_1", 67, "features.10.expand1x1_activation"),
    ("resnet18", 72, "layer3.1.relu:2"),
    ("mobilenet_v3_small", 64, "classifier.0"),
]


def corner_border_and_middle_units(height, width, channels):
    return [(0, 0, (0, 0)), (0, 1, (height // 2, width // 2)), (1, channels - 1, (height - 1, width - 1)),
            (1, 2, (0, width - 1)), (0, 3, (height - 1, 0)), (1, 1, (height // 2, 0))]


@pytest.mark.parametrize("mode", ["deconvnet", "backprop"])
@pytest.mark.parametrize("name,size,layer", CASES)
def test_cone_pass_equals_full_pass(name, size, layer, mode):
    model = build(name)
    torch.manual_seed(4)
    x = torch.rand(2, 3, size, size + 3)  # not square: rows and columns both checked
    with deconvnet.Deconvnet(model) as dn:
        activation = dn.activations(x, [layer])[layer]
        if activation.dim() == 2:
            units = [(0, 5, None), (1, 7, None)]
        else:
            units = corner_border_and_middle_units(*activation.shape[-2:], activation.shape[1])
        cones = dn.project_units(x, layer, units, mode=mode)
        full = dn.project_units(x, layer, units, mode=mode, crop=False)
    scale = float(full.maps.abs().max())
    assert scale > 0
    torch.testing.assert_close(cones.maps, full.maps, rtol=RTOL, atol=ATOL_SCALE * scale)


@pytest.mark.parametrize("mode", ["deconvnet", "guided", "backprop"])
@pytest.mark.parametrize("position", [(0, 0), (3, 6), (7, 7)])
def test_cone_pass_equals_autograd_in_corners_and_middle(position, mode):
    model = build("resnet18")
    torch.manual_seed(5)
    x = torch.rand(1, 3, 64, 64)
    expected, value, _ = autograd_projection(model, x, "layer2.0.conv1", 9, position, mode)
    with deconvnet.Deconvnet(model) as dn:
        projection = dn.project_units(x, "layer2.0.conv1", [(0, 9, position)], mode=mode)
    assert projection.units[0].value == pytest.approx(value, rel=1e-6)
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(projection.maps, expected, rtol=RTOL, atol=ATOL_SCALE * scale)


def test_vgg16_cones_have_the_hand_computed_sizes():
    """A conv5_3 unit's cone: 1 at conv5_3, 3x3 at conv5_2, 5x5 at conv5_1, 7x7 at pool4, 14x14 at
    conv4_3 (2x2 pool), 20x20 at pool3, 40x40 at conv3_3, ... 196x196 at the input (its field)."""
    vgg = torchvision.models.vgg
    features = vgg.make_layers(vgg.cfgs["D"]).eval()  # VGG16's convolutions, without the large classifier
    names = {"conv5_3": "28", "conv5_2": "26", "conv5_1": "24", "pool4": "23", "conv4_3": "21", "pool3": "16",
             "conv3_3": "14"}
    with deconvnet.Deconvnet(features) as dn:
        target = dn.graph.find(names["conv5_3"]).node
        record = dn._recorder.record(torch.rand(1, 3, 224, 224), target, RULES["deconvnet"])
        cones = plan_cones(dn.graph, record, target)
        sizes = {name: cones[dn.graph.find(index).node].size for name, index in names.items()}
        at_input = cones[dn.graph.input]
    assert sizes == {"conv5_3": (1, 1), "conv5_2": (3, 3), "conv5_1": (5, 5), "pool4": (7, 7),
                     "conv4_3": (14, 14), "pool3": (20, 20), "conv3_3": (40, 40)}
    assert at_input.size == (196, 196) and at_input.stride == (16, 16)


def test_a_gate_broadcast_over_the_map_has_no_cone():
    """mobilenet_v3's SE gate is (N, C, 1, 1): its branch gets the whole map, the main path a cone."""
    model = build("mobilenet_v3_small")
    with deconvnet.Deconvnet(model) as dn:
        target = dn.graph.find("features.4.block.3.0").node
        record = dn._recorder.record(torch.rand(1, 3, 64, 64), target, RULES["guided"])
        cones = plan_cones(dn.graph, record, target)
        gate = dn.graph.find("features.4.block.2.avgpool").node
        assert cones[gate] is None
        assert cones[target] is not None and cones[target].size == (1, 1)
