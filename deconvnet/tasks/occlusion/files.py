"""``deconv occlusion`` as a function: an image file in, the sensitivity figure out.

The map is computed by ``deconvnet.tasks.occlusion.compute`` and drawn by
``deconvnet.tasks.occlusion.figure``; this module reads the image and writes the figure.

>>> occlusion("assets/cat.jpg", "cat_occ.png", layer="conv5_3", channel=155)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...dataset.images import open_image
from ...engine.features import FeatureExtractor
from ...fileio import check_writable_dir, save_figure_atomic
from ...models import DEFAULT_MODEL, LoadedModel, class_index, resolve_model
from .compute import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SIZE,
    DEFAULT_STRIDE,
    OcclusionResult,
    describe,
    layer_label,
    mid_grey,
    occluded_input,
    occlusion_map,
)


@dataclass
class Occlusion:
    """What ``occlusion`` did: the figure written, the model and the map."""

    output: Path
    model: str
    result: OcclusionResult
    class_name: str | None  # the class's name, when mapping a class probability of a named class


def occlusion(
    image: str | os.PathLike,
    output: str | os.PathLike,
    *,
    layer: str | None = None,
    channel: int | None = None,
    target_class: int | str | None = None,
    measure: str | None = None,
    model: str | LoadedModel = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    size: int = DEFAULT_SIZE,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Occlusion:
    """Occlude ``image`` with a mid-grey square everywhere and save the sensitivity figure.

    The figure shows the input with the most-affected occluder position outlined, the
    image as the model saw it with that occluder, and how much each position lowers the
    measured value, spread over the image as a heat map.

    >>> occlusion("assets/cat.jpg", "cat_occ.png", layer="conv5_3", channel=155)  # doctest: +SKIP
    """
    output = Path(output)
    check_writable_dir(output.parent)  # fail before the work, not after it
    loaded = resolve_model(model, weights)
    class_name = None
    if target_class is not None:
        if isinstance(target_class, str):
            described = loaded.name if loaded.weights in ("shipped",) or loaded.weights.startswith("torchvision:") \
                else f"{loaded.name} with weights {loaded.weights}"
            target_class = class_index(target_class, loaded.categories, described)
        if loaded.categories and 0 <= target_class < len(loaded.categories):
            class_name = loaded.categories[target_class]
    x = loaded.transform(open_image(image))[None]
    with FeatureExtractor(loaded.model) as dn:
        result = occlusion_map(dn, x, fill=mid_grey(loaded.transform), layer=layer, channel=channel,
                               target_class=target_class, measure=measure, size=size, stride=stride,
                               batch_size=batch_size, progress=progress)
        label = layer_label(dn, result.layer)
    from .figure import occlusion_figure  # matplotlib only once there is a figure to draw

    picture = loaded.transform.to_uint8(x[0])
    occluded = loaded.transform.to_uint8(occluded_input(x, result, loaded.transform)[0])
    figure = occlusion_figure(picture, result, occluded, title=f"{loaded.name}: {describe(result, label, class_name)}")
    save_figure_atomic(output, figure)
    return Occlusion(output, loaded.name, result, class_name)
