"""What the feature-visualization benchmark and check share: vgg16-hed as a plain module for torch-lucent,
and one measurement of a final image's channel mean for both sides.

torch-lucent (PyPI ``torch-lucent``) pins an old kornia and cannot live in the project's venv, so the two
scripts run in their own venv (docs/performance.md says how it was made) and import lucent only if present.

The final activations are measured here, not by either optimizer: the final RGB image (no random
transformation) is normalised with the model's own transform and run through a copy of the model's
``features`` up to the layer, so ours and lucent's are scored by the same independent computation.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

# vgg16-hed's conv layers (``deconv layers``): the Conv2d outputs, before their ReLU.
LAYER_INDEX = {"conv3_3": 14, "conv4_3": 21, "conv5_3": 28}


def import_lucent():
    """lucent's ``render``, ``param`` and ``objectives`` modules, or the one-line reason they cannot be imported."""
    try:
        from lucent.optvis import objectives, param, render
    except Exception as error:  # ImportError, or an old kornia failing against this torch
        return None, f"torch-lucent is not importable here ({type(error).__name__}: {error}); running ours alone"
    return (render, param, objectives), ""


def plain_features(loaded) -> nn.Sequential:
    """A copy of the model's ``features`` whose ReLUs are not in place.

    In place, relu4_3 would overwrite the conv4_3 output that a forward hook (lucent's) kept, and the
    objective would read the ReLU's output instead of the conv's.
    """
    features = copy.deepcopy(loaded.model.features)
    for index, layer in enumerate(features):
        if isinstance(layer, nn.ReLU):
            features[index] = nn.ReLU(inplace=False)
    return features.eval().requires_grad_(False)


class Normalised(nn.Module):
    """RGB in [0, 1] -> the model's input (its transform's channel order, scale, mean and std) -> ``features``.

    Lucent makes images in RGB [0, 1] and hooks modules by name: ``features.21`` inside this wrapper is
    lucent's ``features_21``.
    """

    def __init__(self, features: nn.Sequential, transform) -> None:
        super().__init__()
        self.features = features
        self.bgr = transform.bgr
        self.scale = transform.scale
        self.register_buffer("mean", torch.tensor(transform.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(transform.std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalise(self, rgb: Tensor) -> Tensor:
        x = rgb.flip(1) if self.bgr else rgb
        return (x * self.scale - self.mean) / self.std

    def forward(self, rgb: Tensor) -> Tensor:
        return self.features(self.normalise(rgb))


@torch.no_grad()
def channel_means(wrapped: Normalised, rgb: Tensor, layer: str, channels: list[int]) -> Tensor:
    """Image ``i``'s spatial mean of channel ``channels[i]`` at ``layer``: (N, 3, H, W) RGB in [0, 1] -> (N,)."""
    x = wrapped.normalise(rgb)
    maps = wrapped.features[:LAYER_INDEX[layer] + 1](x)  # (N, C, h, w)
    return maps[torch.arange(len(channels)), torch.tensor(channels)].mean(dim=(1, 2))


def lucent_render(lucent, wrapped: Normalised, layer: str, channel: int, size: int, steps: int,
                  device: str, input_size: int | None) -> Tensor:
    """One channel's image by lucent's ``render_vis``, as (1, 3, H, W) RGB in [0, 1].

    Lucent's defaults: Fourier + decorrelated ``param.image``, Adam at 0.05, its ``standard_transforms``;
    ``preprocess=False`` because ``wrapped`` applies the model's own normalisation (lucent's would be
    torchvision's). Lucent upsamples an image below 224 px to 224 before the model unless
    ``fixed_image_size`` (``input_size``) is given.
    """
    render, param, objectives = lucent
    objective = objectives.channel(f"features_{LAYER_INDEX[layer]}", channel)

    images = render.render_vis(wrapped, objective, param_f=lambda: param.image(size), thresholds=(steps,),
                               preprocess=False, progress=False, show_image=False, save_image=False,
                               fixed_image_size=input_size)
    return torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float().to(device)
