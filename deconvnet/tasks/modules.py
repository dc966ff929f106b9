"""Which modules a model's forward pass calls, in call order (not definition order)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def called_modules(model: nn.Module, input_size: tuple[int, int],
                   keep: Callable[[nn.Module], bool] = lambda module: True) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs that ``keep`` accepts, in the order one forward pass calls them.

    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    >>> [name for name, _ in called_modules(net, (8, 8), lambda m: isinstance(m, torch.nn.ReLU))]
    ['1']
    """
    called: list[tuple[str, nn.Module]] = []
    handles = [module.register_forward_hook(lambda *_, name=name, module=module: called.append((name, module)))
               for name, module in model.named_modules() if keep(module)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, *input_size))
    finally:
        for handle in handles:
            handle.remove()
    return called
