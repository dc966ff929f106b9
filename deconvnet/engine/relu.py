"""The three techniques differ only at a ReLU-like activation: one rule each.

Zeiler & Fergus (ECCV 2014) rectify the signal going down and ignore the forward pass;
guided backpropagation (Springenberg et al. 2015) also applies the forward mask; the plain
gradient (Simonyan et al. 2014) applies the mask without rectifying.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import DeconvError


@dataclass(frozen=True)
class ReluRule:
    """What a technique does at a ReLU-like activation f with derivative f'(x).

    >>> import torch
    >>> RULES["guided"](torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 0.5]))
    tensor([0., 1.])
    """

    name: str
    rectify: bool  # pass max(g, 0) instead of g
    masked: bool  # multiply by f'(x) at the recorded input (the ReLU mask for ReLU)

    def __call__(self, signal: Tensor, derivative: Tensor | None) -> Tensor:
        if self.rectify:
            signal = signal.clamp_min(0)
        if self.masked:
            assert derivative is not None, "the forward pass did not record f'(x)"
            signal = signal * derivative
        return signal


RULES: dict[str, ReluRule] = {
    "deconvnet": ReluRule("deconvnet", rectify=True, masked=False),  # Zeiler & Fergus 2014
    "guided": ReluRule("guided", rectify=True, masked=True),  # guided backpropagation, Springenberg et al. 2015
    "backprop": ReluRule("backprop", rectify=False, masked=True),  # the plain gradient, Simonyan et al. 2014
}
MODES = tuple(RULES)


def relu_rule(mode: str | ReluRule) -> ReluRule:
    """The rule object for a mode name; a DeconvError lists the modes."""
    if isinstance(mode, ReluRule):
        return mode
    if mode not in RULES:
        raise DeconvError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    return RULES[mode]


def check_mode(mode: str) -> None:
    relu_rule(mode)


