"""deconvnet: see what a CNN's units respond to.

Reproduces the deconvnet of Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks" (ECCV 2014), with guided backpropagation and the plain
gradient as the other two ReLU rules.

>>> import deconvnet
>>> model, transform = deconvnet.load_model("vgg16-hed")          # doctest: +SKIP
>>> with deconvnet.Deconvnet(model) as dn:                           # doctest: +SKIP
...     rec = dn.project(x, layer="conv5_3", channel=12)

The public names are imported on first use, so ``import deconvnet`` stays cheap: the
engine loads torch when it is first touched, and matplotlib is loaded only by the
functions that draw.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .engine import drawing as _drawing
from .engine.lazy import lazy_names
from .errors import DeconvError

if TYPE_CHECKING:  # the names below, for type checkers and editors
    from .engine.deconvnet import Deconvnet, Projection, Unit
    from .engine.features import FeatureExtractor
    from .engine.receptive import Box, ReceptiveField
    from .engine.relu import MODES
    from .featurevis import FeatureVisualization, feature_visualization
    from .models import MODELS, LoadedModel, load, load_model
    from .models.zfnet import ZFNet
    from .tasks.visualize import visualize

# public name -> the module that defines it
_LAZY = {
    "FeatureExtractor": "engine.features", "Deconvnet": "engine.deconvnet", "Projection": "engine.deconvnet",
    "Unit": "engine.deconvnet",
    "MODELS": "models", "LoadedModel": "models", "load": "models", "load_model": "models",
    "Box": "engine.receptive", "ReceptiveField": "engine.receptive", "MODES": "engine.relu",
    "visualize": "tasks.visualize", "ZFNet": "models.zfnet",
    "feature_visualization": "featurevis", "FeatureVisualization": "featurevis",
}

__all__ = [
    "Box", "DeconvError", "Deconvnet", "FeatureExtractor", "FeatureVisualization", "LoadedModel", "MODELS", "MODES",
    "Projection", "ReceptiveField", "Unit", "ZFNet", "feature_visualization", "load", "load_model", "visualize",
]
__version__ = "0.1.0"

# Projection.to_image() and .show() draw with deconvnet.render: the engine declares the slot and
# the package fills it here (the engine names nothing above it), loading the renderer on first use.
_drawing.register_renderer(lambda: import_module(".render", __name__))


__getattr__ = lazy_names(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted({*__all__, "__version__"})
