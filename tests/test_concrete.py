"""Models torch.fx cannot trace are recorded from a real forward pass, with the same results."""

import pytest
import torch
import torchvision
from torch import nn

import deconvnet
from reference import ruled_projection
from test_networks import randomized_batchnorm
from tolerance import assert_same_projection, network_sums

MODES = ["deconvnet", "guided", "backprop"]


class Branchy(nn.Module):
    """Branches on a tensor value and loops over a list whose length depends on the input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.bright = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.SiLU())
        self.dark = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GELU())
        self.blocks = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(4))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        bright = x.mean() > 0.5  # a branch on a tensor value
        x = self.stem(x)
        x = self.bright(x) if bright else self.dark(x)
        steps = [block for block in self.blocks][: 1 + int(x.shape[-1] // 8)]  # length from the input
        for block in steps:
            x = torch.relu(block(x)) + x
        x = self.pool(x)
        return self.fc(x.mean((2, 3)))


def test_symbolic_tracing_fails_on_it():
    with pytest.raises(deconvnet.DeconvError, match="cannot trace"):
        deconvnet.Deconvnet(Branchy().eval(), tracing="symbolic")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size,layer", [(16, "logits"), (8, "logits"), (16, "blocks.2"), (16, "branch"),
                                        (16, "pool")])
def test_untraceable_model_projects_like_autograd(size, layer, mode):
    torch.manual_seed(0)
    model = Branchy().eval()
    x = torch.rand(1, 3, size, size)
    with deconvnet.Deconvnet(model) as dn:
        assert dn.concrete
        dn.follow(x)
        if layer == "branch":  # whichever branch this input takes
            layer = "bright" if "bright" in {l.name for l in dn.graph.layers} else "dark"
        module = layer
        activation = dn.activations(x, [layer])[layer][0]
        channel = int(activation.flatten(1).amax(1).argmax()) if activation.dim() == 3 else int(activation.argmax())
        projection = dn.project_units(x, layer, [(0, channel, None)], mode=mode)
    expected, value, _ = ruled_projection(model, x, module, channel, None, mode)
    assert projection.units[0].value == value  # the model's own forward pass, recorded
    assert expected.abs().max() > 0
    # autograd's backward adds in another order (tests/tolerance.py)
    assert_same_projection(projection.maps, expected, **network_sums(model))


def test_the_path_follows_each_input():
    torch.manual_seed(0)
    model = Branchy().eval()
    with deconvnet.Deconvnet(model) as dn:
        dn.follow(torch.rand(1, 3, 16, 16) + 1)
        names = {layer.name for layer in dn.graph.layers}
        assert "bright" in names and "dark" not in names and "blocks.2" in names
        dn.follow(torch.zeros(1, 3, 8, 8) - 1)
        names = {layer.name for layer in dn.graph.layers}
        assert "bright" not in names and "blocks.1" in names and "blocks.2" not in names


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,layer", [("resnet18", "layer3"), ("resnet18", "logits"),
                                        ("squeezenet1_1", "features.9"), ("mobilenet_v2", "features.5")])
def test_recorded_and_traced_graphs_give_the_same_projections(name, layer, mode):
    torch.manual_seed(0)
    model = randomized_batchnorm(torchvision.models.get_model(name, weights=None)).eval()
    x = torch.rand(2, 3, 48, 48)
    units = [(0, 3, None), (1, 5, None), (0, 7, None)]
    with deconvnet.Deconvnet(model) as traced, deconvnet.Deconvnet(model, tracing="concrete") as recorded:
        a = traced.project_units(x, layer, units, mode=mode, crop=False)
        b = recorded.project_units(x, layer, units, mode=mode)
        # module paths, containers included, name the same layers (functional ones are named by fx)
        assert ([l.name for l in recorded.graph.layers if l.module is not None]
                == [l.name for l in traced.graph.layers if l.module is not None])
    assert [u.value for u in a.units] == pytest.approx([u.value for u in b.units], rel=1e-6)
    assert_same_projection(b.maps, a.maps, **network_sums(model))  # the recorded graph runs other kernels
