"""The user's model is only read: no hook left, state and outputs unchanged, on every path."""

import pytest
import torch
import torchvision
from torch import nn

import deconvnet
from tolerance import assert_same_projection, network_sums


def explode(*args):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("failure", [
    None, "injected", "unknown layer", "channel", "position", "mode", "nan input", "training",
])
def test_no_hook_left_and_model_unchanged(failure, watched):
    model = watched.net()
    x = torch.rand(1, 3, 16, 16)
    original = x.clone()  # what the model saw before: the NaN case changes x below
    before_state, before_output = watched.snapshot(model), model(original).clone()
    request = dict(layer="5", channel=2, position=None, mode="deconvnet")
    if failure == "unknown layer":
        request["layer"] = "conv9"
    elif failure == "channel":
        request["channel"] = 8
    elif failure == "position":
        request["position"] = (8, 0)
    elif failure == "mode":
        request["mode"] = "fancy"
    elif failure == "nan input":
        x = x.clone()
        x[0, 0, 0, 0] = float("nan")
    elif failure == "training":
        model.train()
    with deconvnet.Deconvnet(model) as dn:
        if failure == "injected":
            model[4].forward = explode  # an error in the middle of the forward pass
        if failure is None:
            assert dn.project(x, **request).shape == x.shape
        else:
            with pytest.raises(deconvnet.DeconvError):
                dn.project(x, **request)
    vars(model[4]).pop("forward", None)
    model.eval()
    assert watched.hook_count(model) == 0
    assert all(torch.equal(v, before_state[k]) for k, v in model.state_dict().items())
    assert model[1].inplace and model[5].inplace  # in-place ReLUs keep working as they were
    torch.testing.assert_close(model(original), before_output)


def test_user_hooks_are_kept_and_still_fire(watched):
    model = watched.net()
    calls = []
    handle = model[0].register_forward_hook(lambda m, i, o: calls.append(o.shape))
    with deconvnet.Deconvnet(model) as dn:
        dn.project(torch.rand(1, 3, 16, 16), "4", 1)
    assert len(calls) == 1 and watched.hook_count(model) == 1
    handle.remove()


def test_projection_leaves_the_parameters_without_gradients():
    model = torchvision.models.alexnet().eval()
    with deconvnet.Deconvnet(model) as dn:
        dn.project(torch.rand(1, 3, 96, 96), "conv2", 3)
    assert all(p.grad is None for p in model.parameters())


def test_mirror_prints_as_the_paper_draws_it(watched):
    with deconvnet.Deconvnet(watched.net()) as dn:
        text = repr(dn.mirror)
    steps = ("(5): Rectify", "(4): TransposedConv2d", "(2): Unpool2d", "(0): TransposedConv2d")
    order = [text.index(word) for word in steps]
    assert order == sorted(order)  # from the top layer down to the pixels


def test_a_released_deconvnet_says_so(watched):
    with deconvnet.Deconvnet(watched.net()) as dn:
        pass
    with pytest.raises(deconvnet.DeconvError, match="released"):
        dn.project(torch.rand(1, 3, 16, 16), "4", 1)


def test_mirror_does_not_own_the_users_parameters(watched):
    model = watched.net()
    before = {name: (p.dtype, p.data_ptr()) for name, p in model.named_parameters()}
    with deconvnet.Deconvnet(model) as dn:
        assert list(dn.mirror.parameters()) == []
        dn.mirror.half()
        dn.mirror.to(torch.float64)
    assert {name: (p.dtype, p.data_ptr()) for name, p in model.named_parameters()} == before


def test_a_submodule_left_in_training_mode_is_refused(watched):
    model = watched.net()
    model[1].train()  # only one submodule
    with deconvnet.Deconvnet(model) as dn:
        with pytest.raises(deconvnet.DeconvError, match="submodule 1 of the model is in training mode"):
            dn.project(torch.rand(1, 3, 16, 16), "4", 1)


def test_add_with_alpha_and_tensors_as_keywords_follow_autograd():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = torch.add(self.a(x), self.b(x), alpha=-2.5)
            return torch.mul(input=y, other=self.a(x))

    torch.manual_seed(0)
    model = Net().eval()
    x = torch.rand(1, 3, 8, 8)
    with deconvnet.Deconvnet(model) as dn:
        got = dn.project_units(x, "mul", [(0, 1, (3, 4))], mode="backprop").maps
    x_grad = x.clone().requires_grad_(True)
    out = model(x_grad)[0, 1, 3, 4]
    (expected,) = torch.autograd.grad(out, x_grad, out.detach())
    assert_same_projection(got, expected, **network_sums(model))  # transposed convolutions vs autograd's kernels


def test_a_runtime_error_that_is_not_about_size_is_not_called_too_small():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).cumsum(1)

    model = Broken().eval()
    with deconvnet.Deconvnet(model) as dn:
        cuda = RuntimeError("CUDA error: device-side assert triggered")
        error = dn._failure(torch.rand(1, 3, 2, 2), "conv", cuda)
    assert "too small" not in str(error) and "CUDA error" in str(error)


def test_mirror_of_a_modern_network_holds_nothing_of_the_users():
    model = torchvision.models.efficientnet_b0().eval()  # SiLU modules, gates, BatchNorm
    with deconvnet.Deconvnet(model) as dn:
        assert list(dn.mirror.parameters()) == [] and list(dn.mirror.buffers()) == []
        assert not any(m in set(model.modules()) for m in dn.mirror.modules())
