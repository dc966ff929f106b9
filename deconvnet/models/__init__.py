"""Models: the registry of named builders with their weights' transforms, loading by name or file, class names.

``vgg16-hed`` ships with the package and needs no network. torchvision's CNN classifiers (every
family) load their ImageNet weights through torchvision's own weights API (cached after the first
download). Any model also takes a local state dict with ``weights=``; ``timm:NAME`` and
``hf:ID_OR_FOLDER`` name timm and Hugging Face models.

    registry.py      ModelSpec, MODELS, MODEL_FAMILIES, DEFAULT_MODEL, the transforms of the weights
    loaded.py        LoadedModel: what every task takes
    loading.py       load, resolve_model, load_model, and the helpers the timm and hf loaders share
    weights.py       read_state_dict, load_checked, load_state_file: a weights file read safely and fitted
    pickle_check.py  the globals a pickled checkpoint would run, read from its opcodes
    labels.py        class_index: a class name or index against the model's class names

>>> loaded = load("vgg16-hed")                                           # doctest: +SKIP
"""

from .labels import class_index
from .loaded import LoadedModel
from .loading import build_seeded, first_line, import_optional, load, load_model, resolve_model
from .registry import (
    DEFAULT_MODEL,
    HED_TRANSFORM,
    IMAGENET_TRANSFORM,
    MODEL_FAMILIES,
    MODELS,
    RANDOM,
    TORCHVISION_CNNS,
    ModelSpec,
)
from .weights import load_checked, load_state_file, read_state_dict

__all__ = [
    "DEFAULT_MODEL", "HED_TRANSFORM", "IMAGENET_TRANSFORM", "MODEL_FAMILIES", "MODELS", "RANDOM", "TORCHVISION_CNNS",
    "LoadedModel", "ModelSpec", "build_seeded", "class_index", "first_line", "import_optional", "load", "load_checked",
    "load_model", "load_state_file", "read_state_dict", "resolve_model",
]
