"""Operations without a hand-written mirror get their exact adjoint: <L x, y> == <x, L^T y>."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deconvnet
from deconvnet.engine.backward import backward
from deconvnet.engine.relu import RULES


def channel_shuffle(x):
    n, c, h, w = x.size()
    return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


LINEAR_OPS = {
    "avg_pool2d": lambda x: F.avg_pool2d(x, 3, 2, 1),
    "AvgPool2d": nn.AvgPool2d(2, ceil_mode=True),
    "permute": lambda x: x.permute(0, 2, 3, 1) * 1.5,
    "channel shuffle": channel_shuffle,
    "interpolate": lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
    "pad": lambda x: F.pad(x, (1, 2, 0, 3)),
    "slicing": lambda x: x[:, 1:3, ::2, 1:],
    "chunk": lambda x: torch.cat(x.chunk(2, dim=1)[::-1], 1),
    "split": lambda x: x.split([1, 3], dim=1)[1] - x[:, :3],
    "mean": lambda x: x.mean((2, 3)),
    "sum": lambda x: x.sum(1, keepdim=True),
    "scale and subtract": lambda x: 0.5 * x - x.flip(3),
    "add with alpha": lambda x: torch.add(x, x.roll(1, 2), alpha=-3.0),
}


class Wrap(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 4).view(1, 4, 1, 1))  # a parameter product

    def forward(self, x):
        return self.op(x * self.scale)


@pytest.mark.parametrize("tracing", ["symbolic", "concrete"])
@pytest.mark.parametrize("name", list(LINEAR_OPS))
def test_adjoint_identity(name, tracing):
    torch.manual_seed(0)
    model = Wrap(LINEAR_OPS[name]).eval()
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    model.double()
    with deconvnet.Deconvnet(model, tracing=tracing) as dn:
        dn.follow(x)
        target = dn.graph.output_node()
        record = dn._recorder.record(x, target, RULES["backprop"])
        y = torch.randn_like(record.activation)
        back = backward(dn.graph, dn.mirror, record, y, target, None, RULES["backprop"])
    with torch.no_grad():
        forward = model(x)
    assert back.shape == x.shape
    assert float((forward * y).sum()) == pytest.approx(float((x * back).sum()), rel=1e-9)


def test_an_input_made_in_inference_mode_projects_through_adjoints():
    model = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(3, 4, 3), nn.SiLU(), nn.Sigmoid()).eval()
    with torch.inference_mode():
        x = torch.rand(1, 3, 10, 10)
    with deconvnet.Deconvnet(model) as dn:
        maps = dn.project_units(x, "3", [(0, 1, (1, 1))], mode="guided", crop=False).maps
    assert maps.shape == (1, 3, 10, 10) and maps.abs().sum() > 0
