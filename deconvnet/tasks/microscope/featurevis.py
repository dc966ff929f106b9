"""The microscope's feature visualizations: each unit's optimized image, beside its top-k (``--featurevis``).

Olah et al., "Feature Visualization" (Distill 2017) put the image a unit draws for itself next to
its dataset examples; :func:`deconvnet.feature_visualization` makes it, a batch of a layer's
channels in one optimization. Here the site's units are done batch by batch: every image of a
batch is written atomically to ``SITE/<layer>/img/<channel>.featurevis.jpg``, and only then is
the batch recorded as done in ``SITE/data/featurevis.json`` (with the settings and each image's
activation). A build resumes from that record: a batch cut off is computed again, whole, and as a
channel's image depends only on (seed, channel, copy), never on the batch it shares, the
resumed site has the same pictures as an uninterrupted build. Other settings (steps, size,
seed, objective) start the record afresh: every picture is made again.

Example:
    >>> FeaturevisSettings(steps=64).describe()
    'the input optimized to maximize the channel (channel objective), 64 steps, 128 px, seed 0'
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from PIL import Image
from tqdm import tqdm

from ...dataset.distributed import Group
from ...engine.features import FeatureExtractor
from ...engine.validate import check_integer
from ...featurevis import feature_visualization
from ...featurevis.objectives import OBJECTIVES
from ...fileio import save_image_atomic, write_json_atomic
from ...models import LoadedModel

RECORD = "featurevis.json"  # SITE/data/featurevis.json: the settings and the units done, batch by batch
QUALITY = 90
DONE = dict[str, dict[int, float]]  # layer -> channel -> the image's activation


@dataclass(frozen=True)
class FeaturevisSettings:
    """How the microscope's feature visualizations are made (see :func:`deconvnet.feature_visualization`).

    ``batch`` channels of a layer are one optimization. A layer that needs a larger input than
    ``size`` (a fully connected layer after a fixed flatten) gets its minimum size.

    >>> FeaturevisSettings(size=96, batch=32).size
    96
    """

    steps: int = 256
    size: int = 128
    seed: int = 0
    objective: str = "channel"
    batch: int = 16

    def __post_init__(self) -> None:
        for name in ("steps", "size", "batch"):
            check_integer(getattr(self, name), f"featurevis {name}", minimum=1)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"featurevis seed must be an integer, received {self.seed!r}")
        if self.objective not in ("channel", "neuron"):
            raise ValueError(f"featurevis objective must be channel or neuron, received {self.objective!r} "
                             f"(of {', '.join(OBJECTIVES)}, class is for a logits layer only)")

    def key(self) -> dict[str, Any]:
        """What the pictures depend on (the batch does not change them)."""
        return {key: value for key, value in asdict(self).items() if key != "batch"}

    def describe(self) -> str:
        return (f"the input optimized to maximize the {'channel' if self.objective == 'channel' else 'centre unit'} "
                f"({self.objective} objective), {self.steps} steps, {self.size} px, seed {self.seed}")


def as_settings(featurevis: bool | FeaturevisSettings | dict | None) -> FeaturevisSettings | None:
    """The API's ``featurevis=`` argument: False/None (none), True (the defaults), settings, or their dict."""
    if featurevis is None or featurevis is False:
        return None
    if featurevis is True:
        return FeaturevisSettings()
    if isinstance(featurevis, FeaturevisSettings):
        return featurevis
    if isinstance(featurevis, dict):
        unknown = sorted(set(featurevis) - set(asdict(FeaturevisSettings())))
        if unknown:
            raise ValueError(f"unknown featurevis setting {', '.join(unknown)}: expected steps, size, seed, "
                             "objective, batch")
        return FeaturevisSettings(**featurevis)
    raise TypeError(f"featurevis must be True, False, a FeaturevisSettings or a dict of its fields, "
                    f"received {type(featurevis).__name__}")


def image_path(folder: Path, channel: int) -> Path:
    return folder / "img" / f"{channel}.featurevis.jpg"


def read_record(data: Path) -> tuple[dict | None, DONE]:
    """The record's settings and its units done ({} when there is none, or it cannot be read)."""
    try:
        stored = json.loads((data / RECORD).read_text(encoding="utf-8"))
        done = {layer: {int(c): float(v) for c, v in units.items()} for layer, units in stored["done"].items()}
        return stored["settings"], done
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, {}


def _write_record(data: Path, settings: FeaturevisSettings, done: DONE) -> None:
    write_json_atomic(data / RECORD, {"settings": settings.key(), "done": {
        layer: {str(c): value for c, value in sorted(units.items())} for layer, units in done.items()}})


def build(loaded: LoadedModel, data: Path, layers: dict[str, tuple[Path, list[int]]], settings: FeaturevisSettings,
          device: str, progress: bool, *, group: Group | None = None) -> int:
    """Make the missing pictures of ``layers`` (name -> (folder, channels)); returns how many this build made.

    Under torchrun the batches are shared between the processes; rank 0 keeps the record.
    """
    group = group or Group()
    before, done = read_record(data) if group.leader else (None, {})
    if before != settings.key():
        done = {}
    done = group.broadcast(done)
    batches = []
    for layer, (_, channels) in layers.items():
        todo = [c for c in channels if c not in done.get(layer, {})]
        batches += [(layer, todo[i:i + settings.batch]) for i in range(0, len(todo), settings.batch)]
    if group.leader and not batches:
        _write_record(data, settings, done)  # a record from other settings, or none yet
    if not batches:
        return 0
    sizes = image_sides(loaded, {layer for layer, _ in batches}, settings.size)
    made = 0
    with tqdm(total=sum(len(c) for _, c in batches), desc="featurevis", unit="unit", dynamic_ncols=True,
              disable=not (progress and group.leader), file=sys.stderr) as bar:
        mine, steps = group.share(batches)
        for layer, channels in group.lockstep(mine + [("", [])] * (steps - len(mine)), steps):
            found: dict[int, float] = {}
            if channels:  # (a rank whose share ran out still meets the others)
                fv = feature_visualization(loaded, layer, channels, objective=settings.objective,
                                           size=sizes[layer], steps=settings.steps, seed=settings.seed, device=device)
                for channel, picture, value in zip(fv.channels, fv.pictures(), fv.activations.tolist()):
                    save_image_atomic(image_path(layers[layer][0], channel), Image.fromarray(picture),
                                      quality=QUALITY)
                    found[channel] = value
            for one_layer, values in group.all_gather((layer, found)):
                if values:
                    done.setdefault(one_layer, {}).update(values)
                    made += len(values)
                    bar.update(len(values))
            if group.leader:  # only now, every image of the batch written, is it done
                _write_record(data, settings, done)
    return made


def shown(data: Path) -> tuple[str | None, DONE]:
    """What the pages show: the recorded settings described (None: no pictures) and each unit's activation."""
    settings, done = read_record(data)
    if settings is None or not done:
        return None, {}
    try:
        return FeaturevisSettings(**settings).describe(), done
    except (TypeError, ValueError):
        return None, {}


def image_sides(loaded: LoadedModel, layers: Iterable[str], size: int) -> dict[str, int]:
    """Each layer's image side: ``size``, or the layer's minimum input when that is larger, or the model's
    own input side for a layer that takes no other (a fully connected layer after a flatten)."""
    parameter = next(loaded.model.parameters())
    sides = {}
    with FeatureExtractor(loaded.model) as features:
        features.follow_size(loaded.transform.input_size)
        for layer in layers:
            side = max(size, features.minimum_input_size(layer) or 0)
            try:
                with torch.no_grad():
                    features.forward_to([layer])(parameter.new_zeros(0, 3, side, side))
            except RuntimeError:
                side = loaded.transform.input_size[0]
            sides[layer] = side
    return sides
