"""What tasks share: the library the tasks build on, so that no task imports another.

- :func:`project_channel`: a channel's top activations projected and cropped to their
  receptive fields, beside the image patches (top9's sheets, the microscope's strips,
  evolution's cells);
- :func:`folder_names`: a distinct, safe folder name for each layer;
- :func:`called_modules`: the modules a forward pass calls, in call order (filters, invariance).

A module under ``deconvnet/tasks/<task>/`` may import this one and nothing of another task
(tests/test_architecture.py checks it). Channels are chosen with :mod:`deconvnet.channels`.

>>> folder_names(["features.3:2", "conv1"])
{'features.3:2': 'features.3_2', 'conv1': 'conv1'}
"""

from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

from .. import render
from ..engine import Deconvnet
from ..engine.receptive import Box


def project_channel(dn: Deconvnet, transform, x: torch.Tensor, layer: str, channel: int, positions, mode: str):
    """Crops of the projections and image patches of ``channel`` at ``positions[i]`` in image ``x[i]``.

    Returns (projections, patches, boxes, values): uint8 (h, w, 3) crops, the receptive-field
    boxes, and the activation values the projections were seeded with.
    """
    units = [(i, channel, None if p is None else tuple(p)) for i, p in enumerate(positions)]
    projection = dn.project_units(x, layer, units, mode=mode)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    projections, patches, boxes = [], [], []
    for i, unit in enumerate(projection.units):
        box = dn.box(layer, unit.position, size)
        crop = render.crop_with_padding(projection.maps[i].float().cpu(), box, fill=0)
        projections.append(render.to_display(transform.as_rgb(crop), percentile=render.DISPLAY_PERCENTILE))
        patches.append(render.crop_with_padding(transform.to_uint8(x[i]), box, fill=0))
        boxes.append(Box(*box))
    return projections, patches, boxes, [unit.value for unit in projection.units]


def folder_names(layers) -> dict[str, str]:
    """A distinct, safe folder name for each layer name (':' and '/' become '_')."""
    names: dict[str, str] = {}
    for layer in layers:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", layer).strip("._") or "layer"
        name, count = base, 1
        while name in names.values():
            count += 1
            name = f"{base}-{count}"
        names[layer] = name
    return names


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
