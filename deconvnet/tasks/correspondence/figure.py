"""The correspondence figure (the paper's Fig. 8 and Table 1): the images with their part boxes, then the table.

>>> figure = correspondence_figure(pictures, names, boxes, result, title="vgg16-hed")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...engine.receptive import Box
from ...render.figures import NotebookFigure, new_figure, outline_box
from .compute import CorrespondenceResult


def correspondence_figure(pictures: Sequence[np.ndarray], names: Sequence[str], boxes: Sequence[Mapping[str, Box]],
                          result: CorrespondenceResult, *, title: str, max_images: int = 8) -> NotebookFigure:
    """The paper's Fig. 8 and Table 1: the images as the model sees them with their part boxes, then the table."""
    shown = min(len(pictures), max_images)
    colours = {part: f"C{k % 10}" for k, part in enumerate(result.parts)}
    rows = len(result.parts) + 1
    figure = new_figure(max(2.2 * shown, 7.0), 2.9 + 0.25 * (rows + 1))
    grid = figure.add_gridspec(2, shown, height_ratios=[2.2, 0.25 * (rows + 1)])
    for k in range(shown):
        ax = figure.add_subplot(grid[0, k])
        ax.imshow(pictures[k], interpolation="nearest")
        for part, box in boxes[k].items():
            outline_box(ax, box, colour=colours[part], linewidth=1.6)
        ax.set_title(Path(names[k]).stem[:22], fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    table_ax = figure.add_subplot(grid[1, :])
    table_ax.axis("off")
    cells = [[str(cell) for cell in row] for _, row in result.rows()]
    labels = [label for label, _ in result.rows()]
    table = table_ax.table(cellText=cells, rowLabels=labels, colLabels=list(result.layers), cellLoc="center",
                           bbox=(0.08, 0.0, 0.92, 1.0))  # type: ignore[arg-type]
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for row, label in enumerate(labels, start=1):
        table[row, -1].get_text().set_color(colours.get(label, "black"))
    figure.suptitle(f"{title}\nDelta = mean Hamming distance of sign(eps) over image pairs (lower: more consistent); "
                    f"random: {result.repeats} seeded boxes of each part's size", fontsize=9)
    return figure
