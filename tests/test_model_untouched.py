"""The user's model is only read: no hook left, state and outputs unchanged, on every path."""

import pytest
import torch
import torchvision

import deconvnet


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
