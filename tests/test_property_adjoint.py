"""Property: for random layer stacks, the backprop-mode projection is the exact adjoint.

A bias-free stack of convolutions, max pools, ReLUs and shift-free batch norms is positively
homogeneous and piecewise linear: around x it is f(x) = J x, with J fixed by the switches
and masks. The projection of unit u seeded with its value v is v * J_u, so
<x, projection> = v * (J_u . x) = v**2 exactly, whatever the strides, paddings,
dilations, groups, pool windows and rounding modes.
"""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import deconvnet


@st.composite
def stacks(draw):
    torch.manual_seed(draw(st.integers(0, 2**16)))  # the layers' initial weights: a failing case replays
    channels = draw(st.sampled_from([2, 4]))
    size = draw(st.integers(12, 24))
    layers, current, spatial = [], channels, size
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "relu", "bn"]))
        if kind == "conv":
            kernel, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            dilation, padding = draw(st.integers(1, 2)), draw(st.integers(0, 2))
            groups = draw(st.sampled_from([1, current]))
            out = current * draw(st.sampled_from([1, 2]))
            reach = dilation * (kernel - 1) + 1
            if spatial + 2 * padding < reach:
                continue
            layers.append(nn.Conv2d(current, out, kernel, stride, padding, dilation, groups=groups, bias=False))
            current, spatial = out, (spatial + 2 * padding - reach) // stride + 1
        elif kind == "pool":
            kernel, stride = draw(st.integers(2, 3)), draw(st.integers(1, 2))
            padding, ceil = draw(st.integers(0, kernel // 2)), draw(st.booleans())
            if spatial < kernel:
                continue
            layers.append(nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil))
            span = spatial + 2 * padding - kernel
            spatial = -(-span // stride) + 1 if ceil else span // stride + 1
        elif kind == "relu":
            layers.append(nn.ReLU(inplace=draw(st.booleans())))
        else:
            norm = nn.BatchNorm2d(current)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.data.uniform_(0.5, 2.0)
            nn.init.zeros_(norm.bias)  # no shift: the stack stays homogeneous
            layers.append(norm)
    if not any(isinstance(layer, nn.Conv2d) for layer in layers):
        layers.insert(0, nn.Conv2d(channels, channels, 3, padding=1, bias=False))
    return nn.Sequential(*layers).eval(), channels, size, draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_backprop_projection_is_the_adjoint(case):
    model, channels, size, seed = case
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size + 1, generator=generator)
    last = str(len(model) - 1)
    with deconvnet.Deconvnet(model) as dn:
        activation = dn.activations(x, [last])[last][0]
        channel = int(activation.flatten(1).abs().amax(1).argmax())
        plane = activation[channel]
        flat = int(plane.abs().argmax())
        position = (flat // plane.shape[1], flat % plane.shape[1])
        projection = dn.project_units(x, last, [(0, channel, position)], mode="backprop")
    value = projection.units[0].value
    assert projection.maps.shape == x.shape
    inner = float((x.double() * projection.maps.double()).sum())
    assert abs(inner - value ** 2) <= 1e-4 * max(1.0, value ** 2)
