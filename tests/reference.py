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
    captured = {}
    calls = []

    def keep(module, inputs, output):
        calls.append(1)
        if len(calls) == call:
            captured["a"] = output

    handle = net.get_submodule(module_path).register_forward_hook(keep)
    x = x.clone().requires_grad_(True)
    try:
        net(x)
    finally:
        handle.remove()
    activation = captured["a"][0, channel]
    if activation.dim() == 0:
        value, index = activation, ()
    else:
        if position is None:
            flat = int(activation.argmax())
            position = (flat // activation.shape[1], flat % activation.shape[1])
        index = tuple(position)
        value = activation[index]
    # The seed carries the activation's own value (rectification is not linear in it).
    (grad,) = torch.autograd.grad(value, x, grad_outputs=value.detach().clone())
    return grad, float(value.detach()), position
