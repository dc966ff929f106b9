"""deconvnet: see what a CNN's units respond to.

Reproduces the deconvnet of Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks" (ECCV 2014), with guided backpropagation and the plain
gradient as the other two ReLU rules.

>>> import deconvnet
>>> model, transform = deconvnet.load_model("vgg16-hed")          # doctest: +SKIP
>>> with deconvnet.Deconvnet(model) as dn:                           # doctest: +SKIP
...     rec = dn.project(x, layer="conv5_3", channel=12)
"""

from .core.features import FeatureExtractor
from .engine import Deconvnet, Projection, Unit
from .errors import DeconvError
from .models import MODELS, LoadedModel, load, load_model
from .receptive import Box, ReceptiveField
from .rules import MODES
from .visualize import visualize
from .zfnet import ZFNet

__all__ = [
    "Box", "DeconvError", "Deconvnet", "FeatureExtractor", "LoadedModel", "MODELS", "MODES", "Projection",
    "ReceptiveField", "Unit", "ZFNet", "load", "load_model", "visualize",
]
__version__ = "0.1.0"
