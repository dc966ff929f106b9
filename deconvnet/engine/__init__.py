"""The engine: project one activation back to pixel space (Zeiler & Fergus, ECCV 2014, Sec. 2.1).

It computes tensors and nothing else; drawing, files, datasets and the command line are
built on it, and it imports nothing from the rest of the package but ``deconvnet.errors``
(tests/test_architecture.py checks that). Read top-down:

- ``graph``: the model as a ``torch.fx`` graph (symbolic trace), its layer names and aliases.
- ``concrete``: the other way to a graph, recorded from a real forward pass, for models
  that fx cannot trace.
- ``relu``: the three techniques, which differ only at a ReLU-like activation.
- ``steps``: the mirror steps (transposed convolution, unpooling, ..., the exact adjoint).
- ``operations``: the registry, each forward operation's mirror step and receptive-field kind.
- ``receptive``: receptive fields and boxes, from the registry.
- ``validate``: the one check of inputs, channels, positions and units.
- ``features``: the forward-only feature extractor (layers, receptive fields, activations).
- ``mirror``: the mirrored network, one step per operation of the graph.
- ``recorder``: the forward pass that keeps what each step needs (switches, masks, inputs).
- ``backward``: the traversal that carries the seeds down the mirror to the pixels.
- ``windows``: receptive-field window planning, for units at known positions.
- ``cones``: each backward row carried over its unit's cone (a box per layer) only.
- ``coneforward``: the forward pass over a unit's cone only, recording per-row switches and masks.
- ``deconvnet``: ``Deconvnet``, ``Projection`` and ``Unit``, which put them together.
- ``drawing``: the slot through which a Projection draws itself (filled by ``deconvnet/__init__.py``).

The names below load their module (and torch) on first use, so ``deconvnet.engine.drawing``
can be imported by ``import deconvnet`` without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_names

if TYPE_CHECKING:  # the names below, for type checkers and editors
    from .deconvnet import Deconvnet, Projection, Unit
    from .features import FeatureExtractor
    from .receptive import Box, ReceptiveField
    from .relu import MODES

# public name -> the module that defines it
_LAZY = {"Deconvnet": "deconvnet", "Projection": "deconvnet", "Unit": "deconvnet", "FeatureExtractor": "features",
         "Box": "receptive", "ReceptiveField": "receptive", "MODES": "relu"}

__all__ = ["MODES", "Box", "Deconvnet", "FeatureExtractor", "Projection", "ReceptiveField", "Unit"]


__getattr__ = lazy_names(__name__, _LAZY)
