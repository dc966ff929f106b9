"""Each mirrored layer is the exact adjoint of its forward layer: <L x, y> == <x, L^T y>."""

import pytest
import torch
from torch import nn

from deconvnet.engine.operations import MODULE_OPERATIONS
from tolerance import assert_same_sums


def mirror_of(module, x, mode="backprop"):
    """Run ``module`` on ``x`` through its mirror's recorder; return (output, backward function)."""
    step = MODULE_OPERATIONS[type(module)].mirror(module)
    output, saved = step.run(lambda: module(x), [x], mode)
    return output, lambda signal: step(signal, saved, mode)[0]


def inner(a, b):
    return float((a.detach().double() * b.detach().double()).sum())


CONV_CASES = [
    # (in, out, kernel, stride, padding, dilation, groups, size)
    (3, 4, 3, 1, 1, 1, 1, (9, 9)),
    (3, 4, 3, 2, 1, 1, 1, (10, 11)),  # odd and even sizes: output_padding must be chosen
    (3, 6, 5, 2, 0, 1, 1, (13, 12)),
    (4, 4, 3, 2, 2, 2, 2, (15, 14)),  # dilation and groups
    (6, 6, 3, 1, 1, 1, 6, (8, 7)),  # depthwise
    (3, 5, (3, 5), (1, 3), (1, 2), 1, 1, (11, 16)),  # rectangular
    (3, 8, 7, 2, 1, 1, 1, (224, 224)),  # ZFNet conv1
    (3, 2, 11, 4, 2, 1, 1, (67, 67)),  # AlexNet conv1
]


@pytest.mark.parametrize("cin,cout,k,s,p,d,g,size", CONV_CASES)
def test_transposed_convolution_is_the_adjoint(cin, cout, k, s, p, d, g, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=False)
    x = torch.randn(2, cin, *size)
    y, adjoint = mirror_of(conv, x)
    signal = torch.randn_like(y)
    back = adjoint(signal)
    assert back.shape == x.shape
    assert inner(y, signal) == pytest.approx(inner(x, back), rel=1e-4, abs=1e-4)


def test_transposed_convolution_shares_the_weight_tensor():
    conv = nn.Conv2d(3, 4, 3)
    step = MODULE_OPERATIONS[nn.Conv2d].mirror(conv)
    assert step.weight is conv.weight  # tied, not a copy
    assert step.bias is None


POOL_CASES = [
    # (kernel, stride, padding, ceil_mode, size)
    (2, 2, 0, False, (8, 8)),
    (2, 2, 0, True, (9, 7)),
    (3, 2, 0, False, (13, 13)),  # overlapping windows (AlexNet, ZFNet)
    (3, 2, 1, False, (12, 11)),
    (3, 2, 0, True, (26, 26)),  # ZFNet pool2 rounds up
    (3, 1, 1, False, (6, 6)),  # heavily overlapping: the same switch chosen up to 9 times
]


@pytest.mark.parametrize("k,s,p,ceil,size", POOL_CASES)
def test_unpooling_is_the_adjoint_of_max_pooling(k, s, p, ceil, size):
    torch.manual_seed(1)
    pool = nn.MaxPool2d(k, s, padding=p, ceil_mode=ceil)
    x = torch.randn(2, 3, *size)
    y, adjoint = mirror_of(pool, x)
    signal = torch.randn_like(y)
    back = adjoint(signal)
    # Max pooling is the linear map "pick the switch" for this input: y = P x.
    assert inner(y, signal) == pytest.approx(inner(x, back), rel=1e-5, abs=1e-5)
    # and the gradient of max pooling is exactly that adjoint
    x_grad = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(pool(x_grad), x_grad, signal)
    # where windows overlap, up to k*k signals add at one switch, in another order than autograd's
    windows = (k if isinstance(k, int) else k[0]) ** 2
    assert_same_sums(back, expected, terms=windows, magnitude=windows * float(signal.abs().max()))


def test_overlapping_windows_sum_where_maxunpool_overwrites():
    # A constant-free example: the middle value wins both overlapping 3x3 windows.
    x = torch.zeros(1, 1, 3, 5)
    x[0, 0, 1, 2] = 10.0
    y, adjoint = mirror_of(nn.MaxPool2d(3, 2), x)
    back = adjoint(torch.ones_like(y))
    assert back[0, 0, 1, 2] == 2.0  # both windows' signals arrive
    _, indices = nn.functional.max_pool2d(x, 3, 2, return_indices=True)
    overwritten = nn.functional.max_unpool2d(torch.ones_like(y), indices, 3, 2, output_size=x.shape[-2:])
    assert overwritten[0, 0, 1, 2] == 1.0  # what nn.MaxUnpool2d would have given


@pytest.mark.parametrize("module,shape", [
    (nn.Linear(12, 5, bias=False), (3, 12)),
    (nn.AdaptiveAvgPool2d((7, 7)), (2, 3, 2, 3)),  # upsampling: overlapping windows
    (nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 10, 7)),  # uneven windows
    (nn.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
    (nn.Flatten(), (2, 3, 4, 5)),
])
def test_linear_layers_mirror_their_adjoint(module, shape):
    torch.manual_seed(2)
    x = torch.randn(*shape)
    y, adjoint = mirror_of(module, x)
    signal = torch.randn_like(y)
    assert inner(y, signal) == pytest.approx(inner(x, adjoint(signal)), rel=1e-5, abs=1e-5)


def test_batchnorm_in_eval_mode_mirrors_its_channel_scale():
    torch.manual_seed(3)
    norm = nn.BatchNorm2d(4).eval()
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2.0)
    norm.weight.data.uniform_(-2, 2)
    x = torch.randn(2, 4, 5, 5)
    y, adjoint = mirror_of(norm, x)
    signal = torch.randn_like(y)
    shift = norm(torch.zeros_like(x))  # the affine part is not in the adjoint
    assert inner(y - shift, signal) == pytest.approx(inner(x, adjoint(signal)), rel=1e-5)


@pytest.mark.parametrize("mode,expected", [
    ("deconvnet", [[0.0, 2.0], [0.0, 4.0]]),  # rectify the signal, ignore the forward mask
    ("guided", [[0.0, 2.0], [0.0, 0.0]]),  # rectify and mask
    ("backprop", [[-1.0, 2.0], [0.0, 0.0]]),  # mask only
])
def test_relu_rules(mode, expected):
    x = torch.tensor([[[[1.0, 3.0], [-2.0, -1.0]]]])
    _, backward = mirror_of(nn.ReLU(inplace=True), x.clone(), mode)
    signal = torch.tensor([[[[-1.0, 2.0], [-3.0, 4.0]]]])
    assert backward(signal).tolist() == [[expected]]


def test_conv_with_reflect_padding_is_refused_when_crossed():
    import deconvnet

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU()).eval()
    with deconvnet.Deconvnet(model) as dn:
        with pytest.raises(deconvnet.DeconvError, match="padding_mode"):
            dn.project(torch.rand(1, 3, 8, 8), "1", 0)

