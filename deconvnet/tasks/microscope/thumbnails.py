"""The microscope's pictures: per-unit strips of small JPEGs, per-layer tile sprites and mosaics.

A unit's k projections (one strip per mode) and its k image patches (one strip) are each one
JPEG of k square cells, so a unit page loads three small files. A layer page loads one
sprite holding every unit's tile (best projection beside its patch); the index shows a mosaic
of each layer's first units. Strips are the unit of resuming: one that exists is complete.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ... import render
from ...dataset.distributed import Group
from ...dataset.images import open_image
from ...dataset.results import Entry, LayerResults
from ...engine import Deconvnet
from ...fileio import save_image_atomic
from ..top9.sheets import DISPLAY_PERCENTILE, ImageCache, project_channel

CELL = 96  # side of a cell on a unit page, in pixels
TILE = 48  # side of a tile half (projection or patch) on a layer page
TILE_COLUMNS = 16  # tiles per row of the sprite
MOSAIC_SIDE = 8  # the index's mosaic: the first 8x8 units' best projections
MOSAIC_CELL = 24
QUALITY = 85


def strip_path(folder: Path, channel: int, kind: str) -> Path:
    """``kind`` is a mode (the projections) or "patches"."""
    return folder / "img" / f"{channel}.{kind}.jpg"


def sprite_path(folder: Path, mode: str) -> Path:
    return folder / f"tiles.{mode}.jpg"


def _cell(picture: np.ndarray, side: int) -> Image.Image:
    image = Image.fromarray(picture)
    # Small fields are enlarged with visible pixels; large ones reduced smoothly.
    method = Image.Resampling.NEAREST if max(image.size) <= side else Image.Resampling.LANCZOS
    return image.resize((side, side), method)


def _strip(pictures: list[np.ndarray]) -> Image.Image:
    strip = Image.new("RGB", (CELL * len(pictures), CELL), (128, 128, 128))
    for i, picture in enumerate(pictures):
        strip.paste(_cell(picture, CELL), (i * CELL, 0))
    return strip


def render_units(dn: Deconvnet, transform, root: Path, layer: str, folder: Path, table: LayerResults,
                 modes: list[str], device: torch.device, progress: bool, *, group: Group | None = None,
                 on_unit: Callable[[str, int, str], None] | None = None) -> int:
    """Write the missing strips of ``layer`` (every channel of ``table`` in every mode); returns units projected.

    Each channel's k windows (the units' receptive fields) run as one batch. Where a unit sees
    the whole input (a fully connected layer) there is no window to cut, so the units are grouped
    by image instead: the units of one image share its forward pass and its switches. (Grouping by
    image where the field is finite was measured 2-3x slower at conv5_2 and conv5_3 of VGG16: the
    union of an image's windows is the whole image, and the backward passes dominate.) Under
    torchrun the units are split between the processes (``group``); the count is over all of them.
    ``on_unit(layer, channel, mode)`` is called after each unit's strips are written.
    """
    group = group or Group()
    (folder / "img").mkdir(parents=True, exist_ok=True)
    jobs = [(channel, entries, mode) for mode in modes for channel, entries in table.channels.items()
            if entries and not strip_path(folder, channel, mode).exists()]
    jobs = group.broadcast(jobs)  # decided once: the ranks write strips meanwhile
    if not jobs:
        return 0
    by_image = dn.receptive_field(layer).size is None
    with tqdm(total=len(jobs), desc=f"project {layer}", unit="unit", dynamic_ncols=True,
              disable=not (progress and group.leader), file=sys.stderr) as bar:
        for mode in modes:
            mine, steps = group.share([(channel, entries) for channel, entries, job_mode in jobs if job_mode == mode])
            work = _by_image(dn, transform, root, layer, mine, mode, device) if by_image else \
                _by_channel(dn, transform, root, layer, mine, mode, device)
            for channel, projections, patches in group.lockstep(work, steps):
                patch_path = strip_path(folder, channel, "patches")
                if not patch_path.exists():
                    save_image_atomic(patch_path, _strip(patches), quality=QUALITY)
                save_image_atomic(strip_path(folder, channel, mode), _strip(projections), quality=QUALITY)
                bar.update(group.world)
                if on_unit is not None:
                    on_unit(layer, channel, mode)
    return len(jobs)


def _by_channel(dn, transform, root, layer, jobs, mode, device):
    """(channel, projections, patches) per channel, its k windows projected as one batch."""
    cache = ImageCache(transform)
    for channel, entries in jobs:
        x = torch.stack([cache(_source(root, e.image)) for e in entries]).to(device)
        positions = [e.position for e in entries]
        projections, patches, _, _ = project_channel(dn, transform, x, layer, channel, positions, mode)
        yield channel, projections, patches


def _by_image(dn, transform, root, layer, jobs, mode, device):
    """(channel, projections, patches) per channel, as soon as all the images it needs are done.

    Images are visited in the order the channels first need them, so channels finish early
    and an interrupted run keeps most of its work.
    """
    wanted: dict[str, list[tuple[int, int, Entry]]] = {}
    for channel, entries in jobs:
        for rank, entry in enumerate(entries):
            wanted.setdefault(entry.image, []).append((channel, rank, entry))
    cells: dict[int, list] = {channel: [None] * len(entries) for channel, entries in jobs}
    left = {channel: len(entries) for channel, entries in jobs}
    for name, units in wanted.items():
        x = transform(open_image(_source(root, name)))[None].to(device)  # (1, 3, H, W)
        size = tuple(x.shape[-2:])
        picture = transform.to_uint8(x[0])
        maps = dn.project_units(x, layer, [(0, channel, e.position) for channel, _, e in units], mode=mode).maps
        for (channel, rank, entry), projection in zip(units, maps):
            box = dn.box(layer, entry.position, size)
            crop = render.crop_with_padding(projection.float().cpu(), box, fill=0)
            cells[channel][rank] = (render.to_display(transform.as_rgb(crop), percentile=DISPLAY_PERCENTILE),
                                    render.crop_with_padding(picture, box, fill=0))
            left[channel] -= 1
        for channel in sorted({channel for channel, _, _ in units}):
            if left[channel] == 0:
                done = cells.pop(channel)
                yield channel, [c[0] for c in done], [c[1] for c in done]


def _source(root: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path


def _first_cell(path: Path, side: int) -> Image.Image:
    with Image.open(path) as strip:
        return strip.crop((0, 0, CELL, CELL)).resize((side, side), Image.Resampling.LANCZOS)


def write_sprites(folder: Path, channels: list[int], active: set[int], mode: str) -> None:
    """The layer page's sprite for ``mode`` and, for the first mode, the index mosaic (from the strips)."""
    rows = -(-len(channels) // TILE_COLUMNS)
    sprite = Image.new("RGB", (TILE_COLUMNS * 2 * TILE, rows * TILE), (128, 128, 128))
    side = min(MOSAIC_SIDE, math.ceil(math.sqrt(len(channels))))
    mosaic = Image.new("RGB", (side * MOSAIC_CELL, side * MOSAIC_CELL), (255, 255, 255))
    for i, channel in enumerate(channels):
        if channel not in active:  # no images at all: an empty tile
            continue
        row, column = divmod(i, TILE_COLUMNS)
        projection = _first_cell(strip_path(folder, channel, mode), TILE)
        sprite.paste(projection, (column * 2 * TILE, row * TILE))
        sprite.paste(_first_cell(strip_path(folder, channel, "patches"), TILE), ((column * 2 + 1) * TILE, row * TILE))
        if i < side ** 2:
            y, x = divmod(i, side)
            mosaic.paste(projection.resize((MOSAIC_CELL, MOSAIC_CELL), Image.Resampling.LANCZOS),
                         (x * MOSAIC_CELL, y * MOSAIC_CELL))
    save_image_atomic(folder / f"mosaic.{mode}.jpg", mosaic, quality=QUALITY)
    save_image_atomic(sprite_path(folder, mode), sprite, quality=QUALITY)  # last: it marks the layer done
