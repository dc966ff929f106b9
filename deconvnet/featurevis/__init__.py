"""Feature visualization by optimization: the input a unit would draw for itself.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017 (after Erhan et al. 2009,
Simonyan et al. 2014, Yosinski et al. 2015): an image parametrized in a decorrelated Fourier
basis, made robust by random transformations at every step, is optimized to maximize a channel,
a unit or a class logit.

- :mod:`.param`: the image parametrizations (Fourier with 1/f scaling and decorrelated colour, pixels).
- :mod:`.transforms`: the random, seeded, differentiable jitter, scale, rotation and padding.
- :mod:`.objectives`: what is maximized (channel mean, centre unit, class logit) and the diversity term.
- :mod:`.optimize`: :func:`feature_visualization`, all channels of a layer in one batch.

Example:
    >>> import deconvnet
    >>> fv = deconvnet.feature_visualization("vgg16-hed", "conv4_3", [12, 40], steps=64)  # doctest: +SKIP
    >>> fv.images.shape                                                                      # doctest: +SKIP
    torch.Size([2, 3, 128, 128])
"""

from .optimize import FeatureVisualization, feature_visualization

__all__ = ["FeatureVisualization", "feature_visualization"]
