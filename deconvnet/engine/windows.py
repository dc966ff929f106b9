"""Receptive-field window planning: the smallest input windows that determine some projections.

A unit's projection is zero outside its receptive field, and nothing outside that field
can change it (Zeiler & Fergus's projections are local). So for units at known positions,
only a window of each image needs to run forward and back.
"""

from __future__ import annotations

from torch import Tensor

from .receptive import Box, ReceptiveField


def plan_windows(
    units: list[tuple[int, int, tuple[int, int]]], field: ReceptiveField, image_size: tuple[int, int]
) -> dict[int, Box]:
    """For each image, the union of its units' fields inside the image, its start moved back to a
    multiple of the layer's stride, so every pooling and strided grid stays aligned with the full
    image's and the image border keeps the model's own padding.

    >>> field = ReceptiveField((5, 5), (2, 2), (-2, -2))
    >>> plan_windows([(0, 1, (3, 3))], field, (16, 16))
    {0: Box(top=4, left=4, height=5, width=5)}
    """
    height, width = image_size
    windows: dict[int, Box] = {}
    for image, _, (y, x) in units:
        box = field.box(y, x, (height, width)).clipped(height, width)
        windows[image] = union_box(windows[image], box) if image in windows else box
    stride_y, stride_x = field.stride
    for image, box in windows.items():
        top, left = box.top - box.top % stride_y, box.left - box.left % stride_x
        windows[image] = Box(top, left, box.top + box.height - top, box.left + box.width - left)
    return windows


def group_by_size(windows: dict[int, Box]) -> list[list[int]]:
    """Images whose windows have the same size: each group runs as one batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for image, box in windows.items():
        groups.setdefault((box.height, box.width), []).append(image)
    return list(groups.values())


def union_box(a: Box, b: Box) -> Box:
    top, left = min(a.top, b.top), min(a.left, b.left)
    bottom, right = max(a.top + a.height, b.top + b.height), max(a.left + a.width, b.left + b.width)
    return Box(top, left, bottom - top, right - left)


def cut(image: Tensor, box: Box) -> Tensor:
    """(C, H, W) -> (C, box.height, box.width)."""
    return image[:, box.top:box.top + box.height, box.left:box.left + box.width]
