"""Receptive-field window planning: the smallest input windows that determine some projections.

A unit's projection is zero outside its receptive field, and nothing outside that field
can change it (Zeiler & Fergus's projections are local). So for units at known positions,
only a window of each image needs to run forward and back.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from .receptive import Box, ReceptiveField


class Job(NamedTuple):
    """One forward pass over ``window`` of image ``image``, for the units ``rows`` (indices in the request)."""

    image: int
    window: Box
    rows: list[int]


def plan_jobs(units: list[tuple[int, int, tuple[int, int]]], field: ReceptiveField,
              image_size: tuple[int, int]) -> list[Job]:
    """The forward passes for ``units``: each image's units share one window, the union of their
    fields, unless that union holds more pixels than their separate fields together (units far
    apart in a large image), then each unit gets its own. Every window starts at a multiple of the
    layer's stride, so every pooling and strided grid stays aligned with the full image's, and the
    image border keeps the model's own padding.

    >>> field = ReceptiveField((5, 5), (2, 2), (-2, -2))
    >>> plan_jobs([(0, 1, (3, 3)), (0, 2, (3, 4))], field, (16, 16))
    [Job(image=0, window=Box(top=4, left=4, height=5, width=7), rows=[0, 1])]
    >>> [job.window for job in plan_jobs([(0, 1, (0, 0)), (0, 2, (7, 7))], field, (16, 16))]
    [Box(top=0, left=0, height=3, width=3), Box(top=12, left=12, height=4, width=4)]
    """
    height, width = image_size
    rows_of: dict[int, list[int]] = {}
    for row, (image, _, _) in enumerate(units):
        rows_of.setdefault(image, []).append(row)
    jobs = []
    for image, rows in rows_of.items():
        boxes = [_aligned(field.box(*units[row][2], (height, width)).clipped(height, width), field.stride)
                 for row in rows]
        union = boxes[0]
        for box in boxes[1:]:
            union = union_box(union, box)
        if _area(union) <= sum(map(_area, boxes)):
            jobs.append(Job(image, union, rows))
        else:
            jobs.extend(Job(image, box, [row]) for row, box in zip(rows, boxes))
    return jobs


def _aligned(box: Box, stride: tuple[int, ...]) -> Box:
    top, left = box.top - box.top % stride[0], box.left - box.left % stride[1]
    return Box(top, left, box.top + box.height - top, box.left + box.width - left)


def _area(box: Box) -> int:
    return box.height * box.width


def group_by_size(jobs: list[Job]) -> list[list[Job]]:
    """Jobs whose windows have the same size: each group runs as one batch."""
    groups: dict[tuple[int, int], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.window.height, job.window.width), []).append(job)
    return list(groups.values())


def union_box(a: Box, b: Box) -> Box:
    top, left = min(a.top, b.top), min(a.left, b.left)
    bottom, right = max(a.top + a.height, b.top + b.height), max(a.left + a.width, b.left + b.width)
    return Box(top, left, bottom - top, right - left)


def cut(image: Tensor, box: Box) -> Tensor:
    """(C, H, W) -> (C, box.height, box.width)."""
    return image[:, box.top:box.top + box.height, box.left:box.left + box.width]
