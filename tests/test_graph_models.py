"""Beyond plain chains: residual additions, concatenations, reshapes, functional ReLUs."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import deconvnet
from reference import RuleReLUFunction, autograd_projection, with_relu_rule
from test_networks import randomized_batchnorm
from tolerance import assert_same_projection, network_sums

MODES = ["deconvnet", "guided", "backprop"]

GRAPH_CASES = [
    # (model, input size, layer for deconvnet, module path and call for autograd)
    ("resnet18", 64, "layer2.0.conv2", "layer2.0.conv2", 1),
    ("resnet18", 64, "layer2.1.relu:2", "layer2.1.relu", 2),  # after a residual addition
    ("resnet18", 64, "fc", "fc", 1),
    ("squeezenet1_1", 64, "features.6.expand3x3_activation", "features.6.expand3x3_activation", 1),
    ("squeezenet1_1", 64, "features.7.squeeze", "features.7.squeeze", 1),  # reads a concatenation
    ("mobilenet_v2", 64, "features.5.conv.2", "features.5.conv.2", 1),  # depthwise, ReLU6, residual
    ("mobilenet_v2", 64, "classifier.1", "classifier.1", 1),
]


@pytest.fixture(scope="module")
def graph_networks():
    nets = {}
    for name in {case[0] for case in GRAPH_CASES}:
        torch.manual_seed(0)
        nets[name] = randomized_batchnorm(torchvision.models.get_model(name, weights=None)).eval()
    return nets


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,size,layer,path,call", GRAPH_CASES)
def test_graph_projection_equals_autograd(graph_networks, name, size, layer, path, call, mode):
    model = graph_networks[name]
    torch.manual_seed(1)
    x = torch.rand(1, 3, size, size)
    with deconvnet.Deconvnet(model) as dn:
        activation = dn.activations(x, [layer])[layer][0]
        channel = int(activation.flatten(1).amax(1).argmax()) if activation.dim() == 3 else int(activation.argmax())
        projection = dn.project_units(x, layer, [(0, channel, None)], mode=mode)
    expected, value, _ = autograd_projection(model, x, path, channel, None, mode,
                                             ruled=with_relu_rule(model, mode), call=call)
    assert projection.units[0].value == value  # the model's own forward pass
    assert expected.abs().max() > 0
    # autograd's backward adds in another order (tests/tolerance.py)
    assert_same_projection(projection.maps, expected, **network_sums(model))


class CaptumConvNet(nn.Module):
    """The small network of Captum's own deconvolution tests (a view inside forward)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(8, 4)
        self.relu2 = nn.ReLU()
        with torch.no_grad():
            self.conv1.weight.fill_(1.0)
            self.conv1.bias.copy_(torch.tensor([-50.0, -75.0]))
            self.fc1.weight.copy_(torch.tensor([[1.0, 1, 1, 1, 1, -1, -1, -1]]).repeat(4, 1))
            self.fc1.bias.zero_()

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = x.view(-1, 8)
        return self.relu2(self.fc1(x))


@pytest.mark.parametrize("mode,expected", [
    ("deconvnet", [[2, 3, 3, 1], [3, 5, 5, 2], [3, 5, 5, 2], [1, 2, 2, 1]]),
    ("guided", [[0, 1, 1, 1], [1, 3, 3, 2], [1, 3, 3, 2], [1, 2, 2, 1]]),
])
def test_captum_example_gives_its_published_maps(mode, expected):
    x = torch.arange(16.0).view(1, 1, 4, 4)
    model = CaptumConvNet().eval()
    with deconvnet.Deconvnet(model) as dn:
        projection = dn.project_units(x, "relu2", [(0, 0, None)], mode=mode)
    seed = projection.units[0].value
    assert seed == 54.0  # 1*(0+4+31+40) - (0+6+15), worked out by hand
    torch.testing.assert_close(projection.maps[0, 0], torch.tensor(expected, dtype=torch.float32) * seed)


class FunctionalNet(nn.Module):
    """F.relu and torch.relu in forward, a module used twice, torch.cat and flatten."""

    def __init__(self, relu=F.relu):
        super().__init__()
        self.relu = relu
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 5, padding=2)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)
        self.taps = {}  # intermediate outputs, for the autograd reference

    def forward(self, x):
        x = self.taps["cat"] = torch.cat([self.relu(self.a(x)), self.relu(self.b(x))], dim=1)  # (N, 8, 8, 8)
        x = self.pool(self.relu(self.shared(x)))
        second = self.taps["shared:2"] = self.shared(x)  # the same module again
        x = self.relu(second) + x  # a residual
        out = self.taps["fc"] = self.fc(torch.flatten(x, 1))
        return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layer,unit", [("fc", (0, 3, None)), ("shared:2", (0, 5, None)), ("cat", (0, 6, (2, 3)))])
def test_functional_operations_follow_the_rule(mode, layer, unit):
    torch.manual_seed(0)
    model = FunctionalNet().eval()
    reference = FunctionalNet(relu=lambda t: RuleReLUFunction.apply(t, mode)).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 8, 8)
    with deconvnet.Deconvnet(model) as dn:
        projection = dn.project_units(x, layer, [unit], mode=mode)
        seed_value = projection.units[0].value
        position = projection.units[0].position
    # autograd through the reference, seeded at the same activation with the same value
    x_grad = x.clone().requires_grad_(True)
    reference(x_grad)
    activation = reference.taps[layer]
    index = (0, unit[1]) + (tuple(position) if position else ())
    (expected,) = torch.autograd.grad(activation[index], x_grad, torch.tensor(seed_value))
    assert float(activation[index].detach()) == pytest.approx(seed_value, rel=1e-6)
    torch.testing.assert_close(projection.maps, expected, rtol=1e-4, atol=1e-6)


def test_receptive_field_of_a_residual_block_is_the_union_of_its_paths():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    with deconvnet.Deconvnet(model) as dn:
        # conv1 7x7/2 pad 3 -> 7; maxpool 3x3/2 -> 11 (stride 4); two 3x3 convs in layer1.0 -> 27
        assert dn.receptive_field("conv1").size == (7, 7)
        assert dn.receptive_field("maxpool").size == (11, 11)
        assert dn.receptive_field("layer1.0.conv2").size == (27, 27)
        # the identity path (11) and the conv path (27) meet at the addition: the union is 27
        assert dn.receptive_field("add").size == (27, 27)


class WritesInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)

    def forward(self, x):
        y = self.a(x)
        y.mul_(0.5)  # a change the data flow does not show: nothing reads mul_'s result
        return self.b(y)


def test_unsupported_operation_is_named_with_its_place():
    model = WritesInPlace().eval()
    with deconvnet.Deconvnet(model) as dn:
        with pytest.raises(deconvnet.DeconvError, match=r"cannot project through .*mul_.*in place"):
            dn.project(torch.rand(1, 3, 12, 12), "b", 0)
        assert dn.project(torch.rand(1, 3, 12, 12), "a", 0).shape == (1, 3, 12, 12)  # below it works


class Cube(torch.autograd.Function):
    """A custom autograd Function: its backward is the model's own, not a rule the engine knows."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * grad


class WithCube(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.b(Cube.apply(self.a(x)))


@pytest.mark.parametrize("tracing", ["symbolic", "concrete"])
def test_custom_autograd_function_is_named_with_its_place(tracing):
    model = WithCube().eval()
    x = torch.rand(1, 3, 12, 12)
    with deconvnet.Deconvnet(model, tracing=tracing) as dn:
        with pytest.raises(deconvnet.DeconvError, match=r"cannot project through \S+ \(Cube\) is a custom autograd"):
            dn.project(x, "b", 0)
        assert dn.project(x, "a", 0).shape == (1, 3, 12, 12)  # below it works
        # and it runs as the model's (the engine's forward may use other kernels: equal to rounding)
        assert_same_projection(dn.activations(x, ["b"])["b"], model(x), **network_sums(model))


def test_untraceable_model_gets_a_clear_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(deconvnet.DeconvError, match="cannot trace DataDependent.*tracing='concrete'"):
        deconvnet.Deconvnet(DataDependent(), tracing="symbolic")
    with deconvnet.Deconvnet(DataDependent().eval()) as dn:  # recorded from a real forward pass instead
        x = -torch.ones(1, 1, 2, 2)
        assert dn.project_units(x, "neg", [(0, 0, (1, 1))], mode="backprop").maps[0, 0, 1, 1] == -1
