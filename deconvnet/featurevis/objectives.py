"""What feature visualization maximizes (Olah et al., "Feature Visualization", Distill 2017).

Image ``i`` of a batch is scored on its own channel ``channels[i]``: the channel's mean over the
map ("channel"), the centre unit of the map ("neuron"), or the channel of a (N, K) output such as
the logits ("class"). The diversity term is the Distill article's: the cosine similarity of the
images' Gram matrices (style), averaged over the other images of the same group.

Example:
    >>> import torch
    >>> scores(torch.ones(2, 4, 3, 3), torch.tensor([1, 3]), "channel")
    tensor([1., 1.])
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import DeconvError

OBJECTIVES = ("channel", "neuron", "class")


def check_output(objective: str, shape: tuple[int, ...], layer: str) -> None:
    """Refuse in one line an objective that ``layer``'s output of ``shape`` cannot give."""
    if objective not in OBJECTIVES:
        raise DeconvError(f"unknown objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    if objective == "neuron" and len(shape) != 4:
        raise DeconvError(f"layer {layer} has no spatial maps (its output is {tuple(shape)}), so it has no centre "
                          f"unit: use --objective channel or class, or a convolutional layer")
    if objective == "class" and len(shape) != 2:
        raise DeconvError(f"--objective class needs an output of class scores (N, K); layer {layer} gives "
                          f"{tuple(shape)}: use the logits layer, or --objective channel")
    if len(shape) not in (2, 4):
        raise DeconvError(f"layer {layer} gives an output of shape {tuple(shape)}; feature visualization needs "
                          f"(N, C, H, W) maps or (N, K) scores")


def scores(activations: Tensor, channels: Tensor, objective: str) -> Tensor:
    """Each image's score on its own channel: (N, C, H, W) or (N, K) -> (N,)."""
    picked = activations[torch.arange(activations.shape[0], device=activations.device), channels]  # (N, [H, W])
    if picked.dim() == 1:  # (N,): a score per image already
        return picked
    if objective == "neuron":
        height, width = picked.shape[-2:]
        return picked[:, height // 2, width // 2]
    return picked.flatten(1).mean(dim=1)


def gram_similarity(activations: Tensor, groups: int) -> Tensor:
    """The diversity penalty: mean cosine similarity of the Gram matrices of images in the same group.

    The batch is ``groups`` consecutive groups (one per channel) of equal size; (N,) per image,
    zero for a group of one.
    """
    n = activations.shape[0]
    size = n // groups
    flat = activations.flatten(2) if activations.dim() == 4 else activations[:, :, None]  # (N, C, HW)
    grams = flat @ flat.transpose(1, 2)  # (N, C, C)
    grams = grams.flatten(1)
    grams = grams / grams.norm(dim=1, keepdim=True).clamp(min=1e-10)
    similarity = grams.view(groups, size, -1) @ grams.view(groups, size, -1).transpose(1, 2)  # (G, S, S)
    others = similarity.sum(dim=2) - similarity.diagonal(dim1=1, dim2=2)  # (G, S)
    return (others / max(size - 1, 1)).reshape(n)
