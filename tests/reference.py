"""Independent reference computations for the tests: autograd with a chosen ReLU rule."""

from __future__ import annotations

import copy

import torch
from torch import nn


class RuleReLUFunction(torch.autograd.Function):
    """ReLU (or ReLU6 with upper=6) whose backward follows one technique's rule."""

    @staticmethod
    def forward(ctx, x, mode, upper=None):
        ctx.save_for_backward(x)
        ctx.mode = mode
        ctx.upper = upper
        return x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        mask = (x > 0) if ctx.upper is None else (x > 0) & (x < ctx.upper)
        if ctx.mode == "deconvnet":
            return grad.clamp_min(0), None, None
        if ctx.mode == "guided":
            return grad.clamp_min(0) * mask, None, None
        return grad * mask, None, None


class RuleReLU(nn.Module):
    def __init__(self, mode, upper=None):
        super().__init__()
        self.mode, self.upper = mode, upper

    def forward(self, x):
        return RuleReLUFunction.apply(x, self.mode, self.upper)


def with_relu_rule(model: nn.Module, mode: str) -> nn.Module:
    """A deep copy of ``model`` whose ReLUs and ReLU6s backpropagate with ``mode``'s rule."""
    clone = copy.deepcopy(model)
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.ReLU:
                setattr(module, child_name, RuleReLU(mode))
            elif type(child) is nn.ReLU6:
                setattr(module, child_name, RuleReLU(mode, upper=6.0))
    return clone


def autograd_projection(model, x, module_path, channel, position, mode, *, ruled=None, call=1):
    """d<seed, activation>/dx where the seed keeps one activation: the deconvnet by autograd.

    ``position`` None picks the strongest activation of the channel. ``ruled`` is a ready
    ``with_relu_rule(model, mode)`` (copies of large models are slow). ``call`` picks the
    n-th use of a module used several times. Returns (map, value, position).
    """
    net = ruled if ruled is not None else with_relu_rule(model, mode)
    captured: dict = {}
    handle = _keep_output(net.get_submodule(module_path), call, captured)
    x = x.clone().requires_grad_(True)
    try:
        net(x)
    finally:
        handle.remove()
    return _seeded_gradient(captured["a"][0, channel], x, position)


def _keep_output(module, call, captured):
    """A hook that keeps the output of the ``call``-th use of ``module`` in ``captured["a"]``."""
    calls = []

    def keep(module, inputs, output):
        calls.append(1)
        if len(calls) == call:
            captured["a"] = output

    return module.register_forward_hook(keep)


def _seeded_gradient(activation, x, position):
    """The gradient of one unit of ``activation`` (C's map, or a scalar) seeded with its own value.

    The seed carries the activation's own value (rectification is not linear in it). Without
    ``position`` the unit is the map's first maximum in row-major order."""
    if activation.dim() == 0:
        value = activation
    else:
        if position is None:
            flat = int(activation.argmax())
            position = (flat // activation.shape[1], flat % activation.shape[1])
        value = activation[tuple(position)]
    (grad,) = torch.autograd.grad(value, x, grad_outputs=value.detach().clone())
    return grad, float(value.detach()), position


# -- autograd with every ReLU-like activation's backward replaced by the mode's rule -----------
# Independent of the engine: it intercepts the activation functions themselves (nn.ReLU calls
# F.relu, nn.SiLU calls F.silu, ...) while autograd differentiates everything else exactly.

import torch.nn.functional as F  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

RELU_LIKE = {F.relu, torch.relu, torch.Tensor.relu, F.leaky_relu, F.elu, F.silu, F.gelu, F.hardswish, F.mish,
             F.relu6}


class _RuledActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, apply, mode):
        ctx.save_for_backward(x)
        ctx.apply_, ctx.mode = apply, mode
        return apply(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (derivative,) = torch.autograd.grad(ctx.apply_(leaf), leaf, torch.ones_like(x))
        if ctx.mode == "deconvnet":
            return grad.clamp_min(0), None, None
        if ctx.mode == "guided":
            return grad.clamp_min(0) * derivative, None, None
        return grad * derivative, None, None


class RuledActivations(TorchFunctionMode):
    """Within this mode, ReLU, ReLU6, LeakyReLU, ELU, SiLU, GELU, Hardswish and Mish backpropagate
    with ``mode``'s rule (f'(x) in place of the ReLU mask); in-place calls run out of place."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        relu6 = func is F.hardtanh and _arg(args, kwargs, 1, "min_val", -1.0) == 0.0
        if func in RELU_LIKE or relu6:
            kwargs.pop("inplace", None)
            x, rest = args[0], args[1:]
            if relu6:
                rest = rest[:2]
            return _RuledActivation.apply(x, lambda t: func(t, *rest, **kwargs), self.mode)
        return func(*args, **kwargs)


def _arg(args, kwargs, index, name, default):
    return args[index] if len(args) > index else kwargs.get(name, default)


def ruled_projection(model, x, module_path, channel, position, mode, *, call=1):
    """Like autograd_projection, with every ReLU-like activation ruled; ``module_path`` None or
    "logits" is the model's output. A container's activation is what its forward returns."""
    captured: dict = {}
    handle = None
    if module_path not in (None, "logits"):
        handle = _keep_output(model.get_submodule(module_path), call, captured)
    x = x.clone().requires_grad_(True)
    try:
        with RuledActivations(mode):
            output = model(x)
    finally:
        if handle is not None:
            handle.remove()
    if handle is None and hasattr(output, "logits"):  # a Hugging Face ModelOutput: its class scores
        output = output.logits
    return _seeded_gradient((captured["a"] if handle is not None else output)[0, channel], x, position)
