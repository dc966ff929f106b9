"""Independent reference computations for the tests: autograd with a chosen ReLU rule."""

from __future__ import annotations

import copy

import torch
from torch import nn


class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mode):
        ctx.save_for_backward(x)
        ctx.mode = mode
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.mode == "deconvnet":
            return grad.clamp_min(0), None
        if ctx.mode == "guided":
            return grad.clamp_min(0) * (x > 0), None
        return grad * (x > 0), None


class RuleReLU(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return _RuleReLU.apply(x, self.mode)


def with_relu_rule(model: nn.Module, mode: str) -> nn.Module:
    """A deep copy of ``model`` whose ReLUs backpropagate with ``mode``'s rule."""
    clone = copy.deepcopy(model)
    for name, module in list(clone.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, RuleReLU(mode))
    return clone


def autograd_projection(model, x, module_path, channel, position, mode):
    """d<seed, activation>/dx where the seed keeps one activation: the deconvnet by autograd.

    ``position`` None picks the strongest activation of the channel. Returns (map, value, position).
    """
    net = with_relu_rule(model, mode)
    captured = {}

    def keep(module, inputs, output):
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
