"""The deconvnet's core (Zeiler & Fergus, ECCV 2014, Sec. 2.1), one concern per module.

Read top-down:

- ``features``: the forward-only feature extractor: the model's graph, layer names,
  receptive fields and activations (what a scan, occlusion or ``deconv layers`` need).
- ``mirror``: the mirrored network, one backward step per forward operation (rules.py).
- ``recorder``: a ``torch.fx.Interpreter`` that runs the forward pass and keeps what each
  mirror step needs (switches, masks, shapes, the inputs of exact adjoints).
- ``backward``: the traversal that carries one seed down the mirror to the pixels.
- ``windows``: receptive-field window planning, for projections of units at known positions.
- ``validate``: the one check of inputs, channels, positions and units.

``deconvnet.engine.Deconvnet`` puts them together.
"""
