"""Feature visualization by optimization (Olah et al., "Feature Visualization", Distill 2017).

The input that maximizes a unit, made by gradient ascent on a Fourier (or pixel) parametrization
under random transformations. Every channel asked for is one image of the same batch, optimized
in one step for all of them, so a layer's 512 channels are a few batches. A step draws its random
transformations once for the whole batch; on a GPU the batch then runs forward and back at once,
on a CPU a few images at a time (``STEP_CHUNK``), channels last, which oneDNN runs faster per image.
The chunks' gradients are joined before they reach the image's parameters, so the step is the whole
batch's, up to float rounding (each image's loss depends on its own pixels only; a channel's copies,
which the diversity term compares, share a chunk).

The model is never changed: the forward pass is the engine's truncated copy of the model's graph
(it stops at ``layer``, shares the model's parameters, and holds no hook), and gradients are taken
with ``torch.autograd.grad`` for the image's parameters only, so no ``.grad`` appears on the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..channels import ChannelSelection, channel_numbers, select_channels
from ..engine.features import FeatureExtractor
from ..errors import DeconvError
from ..models import LoadedModel, resolve_model
from ..models.transforms import ImageTransform
from .objectives import check_output, gram_similarity, scores
from .param import make_param
from .transforms import Transform, apply, standard_transforms

# Images per forward and backward of the network in one step. oneDNN's convolutions run faster per
# image in small batches and channels last (vgg16-hed to conv4_3 at 140 px, forward and backward, AMD
# EPYC 2 cores AVX-512: 0.051 s an image in fours channels last, 0.084 in one batch of 16 NCHW).
STEP_CHUNK = 4


@dataclass
class FeatureVisualization:
    """The optimized images of one layer's channels.

    ``images`` (N, 3, H, W) are in the model's input space (normalised as its transform does);
    ``rgb`` the same images as RGB in [0, 1]; ``activations`` (N,) each image's objective on its
    channel, measured on the final image without transformations. With ``copies`` > 1, the
    images of ``channels[i]`` are rows ``i * copies ... (i + 1) * copies - 1``.
    """

    images: Tensor
    rgb: Tensor
    activations: Tensor
    layer: str
    channels: list[int]
    objective: str
    copies: int = 1
    transform: ImageTransform | None = None

    def pictures(self) -> list[np.ndarray]:
        """Each image as an RGB uint8 picture (H, W, 3), shown with the model's ``transform.to_uint8``."""
        if self.transform is not None:
            return [self.transform.to_uint8(x) for x in self.images]
        return [(x.detach().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
                for x in self.rgb]


def _normaliser(transform: ImageTransform | None) -> Callable[[Tensor], Tensor]:
    """RGB in [0, 1] (N, 3, H, W) -> the model's input, as ``transform`` makes it from a picture."""
    if transform is None:
        return lambda rgb: rgb
    mean = torch.tensor(transform.mean).view(1, 3, 1, 1)
    std = torch.tensor(transform.std).view(1, 3, 1, 1)

    def normalise(rgb: Tensor) -> Tensor:
        x = rgb.flip(1) if transform.bgr else rgb
        return (x * transform.scale - mean.to(x)) / std.to(x)

    return normalise


def _resolve(model: Any, device: str) -> tuple[nn.Module, ImageTransform | None, list[str] | None]:
    """The module to run, its preprocessing, and its class names; a name is loaded onto ``device``."""
    if isinstance(model, str):
        loaded = resolve_model(model)
        return loaded.model.to(device), loaded.transform, loaded.categories  # our own copy: free to move
    if isinstance(model, LoadedModel):
        module, transform, categories = model.model, model.transform, model.categories
    elif isinstance(model, nn.Module):
        module, transform, categories = model, None, None
    else:
        raise TypeError(f"model must be a model name, a LoadedModel or an nn.Module, received {type(model).__name__}")
    parameter = next(module.parameters(), None)
    if parameter is not None and parameter.device != torch.device(device):
        raise DeconvError(f"the model is on {parameter.device} but device={device!r}: move the model there first, "
                          f"or pass device={str(parameter.device)!r}")
    return module, transform, categories


def seeded(seed: int, *path: int) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and ``path`` only (numpy's SeedSequence mixes them), so that
    (seed, channel, copy) gives the same draws in any batch.

    >>> float(torch.rand(1, generator=seeded(0, 1, 12, 0))) == float(torch.rand(1, generator=seeded(0, 1, 12, 0)))
    True
    """
    state = np.random.SeedSequence([seed % (1 << 64), *path]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _dtype(module: nn.Module) -> torch.dtype:
    """The model's floating dtype (float64 for a model in double precision), float32 by default."""
    parameter = next((p for p in module.parameters() if p.is_floating_point()), None)
    return torch.float32 if parameter is None else parameter.dtype


def _check_options(steps: int, size: int, lr: float, diversity: float, copies: int) -> None:
    for name, value, minimum in (("steps", steps, 1), ("size", size, 1), ("copies", copies, 1)):
        if not isinstance(value, int) or value < minimum:
            raise DeconvError(f"{name} must be a whole number of at least {minimum}, received {value!r}")
    if not lr > 0:
        raise DeconvError(f"lr must be positive, received {lr}")
    if not diversity >= 0:
        raise DeconvError(f"diversity must be 0 (off) or positive, received {diversity}")


def feature_visualization(model: str | LoadedModel | nn.Module, layer: str,
                          channels: ChannelSelection, *, objective: str = "channel",
                          size: int = 128, steps: int = 256, lr: float = 0.05, param: str | nn.Module = "fourier",
                          diversity: float = 0.0, copies: int = 1, seed: int = 0, device: str = "cpu",
                          transform: Sequence[Transform] | None = None,
                          progress: bool = False,
                          on_step: Callable[[int, int], None] | None = None) -> FeatureVisualization:
    """Optimize one image per channel of ``layer`` (times ``copies``) to maximize ``objective``.

    ``model``: a name (loaded here onto ``device``), a LoadedModel (its transform normalises the
    image) or a plain nn.Module (fed RGB in [0, 1]). ``objective``: "channel" (mean of the map),
    "neuron" (its centre unit) or "class" (a logit: ``layer`` gives (N, K) scores). ``param``:
    "fourier" (1/f spectrum, decorrelated colour), "pixel", or a module returning (N, 3, H, W) in
    [0, 1]. ``diversity`` weighs the Gram-similarity penalty between the ``copies`` of a channel.
    ``transform``: the random transformations of each step (default Lucid's standard ones; ``[]``
    for none). ``channels`` is a :data:`deconvnet.channels.ChannelSelection` (``[12, 40]``, in that
    order; ``ClassChannels("tabby")`` for class logits).
    The same ``seed`` gives the same images on the same device, and a channel's images
    depend only on (seed, channel, copy), not on the other channels of the call: channel 12 alone
    and channel 12 among 16 give the same image, up to the float rounding of batched kernels
    (about 1e-6 in float32; in float64, as a model in double precision runs, about 1e-12). The
    image is made in the model's dtype. ``on_step(done, steps)`` is called after each step.

    Example:
        >>> fv = feature_visualization("vgg16-hed", "conv4_3", [12, 40], steps=128)  # doctest: +SKIP
        >>> fv.images.shape, fv.activations.shape                                       # doctest: +SKIP
        (torch.Size([2, 3, 128, 128]), torch.Size([2]))
    """
    _check_options(steps, size, lr, diversity, copies)
    channel_numbers(channels)  # its type, before the model loads
    module, preprocessing, categories = _resolve(model, device)
    with FeatureExtractor(module) as features:
        features.follow_size((size, size))
        features.layer(layer)  # an unknown name fails here, listing the valid ones
        needed = features.minimum_input_size(layer)
        if needed is not None and size < needed:
            raise DeconvError(f"size {size} is too small for layer {layer}: it needs an input of at least "
                              f"{needed}x{needed}; use size {needed} or more")
        forward = features.forward_to([layer])
        with torch.no_grad():
            (probe,) = forward(torch.empty(0, 3, size, size, device=device, dtype=_dtype(module)))  # shapes only
        check_output(objective, tuple(probe.shape), layer)
        picked = select_channels(channels, probe.shape[1], layer, categories=categories, ordered=True)
        targets = torch.tensor(picked, device=device).repeat_interleave(copies)  # (N,)
        # Each image starts from (seed, channel, copy) alone and every image sees the transformations of
        # (seed, step): a channel's image is the same whichever channels share its batch.
        starts = [seeded(seed, 1, channel, copy) for channel in picked for copy in range(copies)]
        generator = seeded(seed, 0)
        image = (make_param(param, len(targets), size, starts).to(device=device, dtype=_dtype(module))
                 if isinstance(param, str) else param.to(device))
        normalise = _normaliser(preprocessing)
        steps_applied = standard_transforms() if transform is None else list(transform)
        parameters = [p for p in image.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(parameters, lr=lr)

        def run(rgb: Tensor) -> Tensor:
            x = normalise(rgb)
            if x.dim() == 4 and x.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            try:
                return forward(x)[0]
            except RuntimeError as error:
                raise features._failure(x, layer, error) from error

        # A chunk holds whole groups of a channel's copies: the diversity term compares them. A GPU
        # takes the whole batch at once.
        chunk = copies * max(1, STEP_CHUNK // copies) if torch.device(device).type == "cpu" else len(targets)
        for step in tqdm(range(steps), desc=f"featurevis {layer}", unit="step", disable=not progress,
                         dynamic_ncols=True):
            transformed = apply(steps_applied, image(), generator)  # (N, 3, h, w), one draw for all
            pixel_grads = []
            for part, wanted in zip(transformed.detach().split(chunk), targets.split(chunk)):
                pixels = part.detach().requires_grad_(True)
                activations = run(pixels)  # (n, C, h, w) or (n, K)
                loss = -scores(activations, wanted, objective).sum()  # a sum: each image's step ignores the others
                if diversity > 0:
                    loss = loss + diversity * gram_similarity(activations, len(activations) // copies).sum()
                pixel_grads.extend(torch.autograd.grad(loss, pixels))
            for p, grad in zip(parameters, torch.autograd.grad(transformed, parameters, torch.cat(pixel_grads))):
                p.grad = grad
            optimizer.step()
            if on_step is not None:
                on_step(step + 1, steps)
        with torch.no_grad():
            rgb = image()
            final = torch.cat([scores(run(part), wanted, objective)
                               for part, wanted in zip(rgb.split(chunk), targets.split(chunk))])
            images = normalise(rgb)
    return FeatureVisualization(images=images.detach(), rgb=rgb.detach(), activations=final.detach(), layer=layer,
                                channels=picked, objective=objective, copies=copies, transform=preprocessing)
