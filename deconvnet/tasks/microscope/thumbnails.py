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
from typing import Callable, Iterator, NamedTuple

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
from ...render import DISPLAY_PERCENTILE

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


def _strip(cells: list[Image.Image]) -> Image.Image:
    strip = Image.new("RGB", (CELL * len(cells), CELL), (128, 128, 128))
    for i, cell in enumerate(cells):
        strip.paste(cell, (i * CELL, 0))
    return strip


class Unit(NamedTuple):
    """One unit's work: its layer, channel, k entries and the modes whose strips are missing."""

    layer: str
    folder: Path
    channel: int
    entries: list[Entry]
    modes: tuple[str, ...]


def render_units(dn: Deconvnet, transform, root: Path, layers: list[tuple[str, Path, LayerResults]],
                 modes: list[str], device: torch.device, progress: bool, *, group: Group | None = None,
                 on_unit: Callable[[str, int, str], None] | None = None) -> int:
    """Write the missing strips of every unit of ``layers`` (layer, folder, results) in every mode;
    returns the strips projected (a unit in two modes counts twice).

    The work runs by image: one forward pass over an image records what all of its units need, in
    every layer and mode (Deconvnet.project_layers), and each unit's backward pass runs over its
    cone only. (Each image sits in about 38 of the 4224 top-9 lists of vgg16-hed over 1000 photos; a
    forward for each entry over its own cone instead cost 2.5x more per conv5_3 unit, and the whole
    task took 1.9x as long: scripts/bench_microscope.py.) A unit's strips are written as soon as its
    k images are done, and images are visited in the order the units first need them, so units
    finish early and an interrupted build keeps most of its work. Memory: the finished cells of the
    units still waiting for images, 2 x CELL x CELL x 3 bytes each (at most 2.1 GB for all 38016 of
    vgg16-hed at k = 9). Under torchrun the units are split between the processes (``group``); the
    count is over all of them. ``on_unit(layer, channel, mode)`` is called after each unit's strip
    of a mode is written.
    """
    group = group or Group()
    units = []
    for layer, folder, table in layers:
        (folder / "img").mkdir(parents=True, exist_ok=True)
        for channel, entries in table.channels.items():
            missing = tuple(mode for mode in modes if not strip_path(folder, channel, mode).exists())
            if entries and missing:
                units.append(Unit(layer, folder, channel, entries, missing))
    units = group.broadcast(units)  # decided once: the ranks write strips meanwhile
    if not units:
        return 0
    total = sum(len(unit.modes) for unit in units)
    with tqdm(total=total, desc="project", unit="strip", dynamic_ncols=True,
              disable=not (progress and group.leader), file=sys.stderr) as bar:
        mine, steps = group.share(units)
        for unit, cells in group.lockstep(_by_image(dn, transform, root, mine, device), steps):
            patch_path = strip_path(unit.folder, unit.channel, "patches")
            if not patch_path.exists():
                save_image_atomic(patch_path, _strip(cells["patches"]), quality=QUALITY)
            for mode in unit.modes:
                save_image_atomic(strip_path(unit.folder, unit.channel, mode), _strip(cells[mode]), quality=QUALITY)
                if on_unit is not None:
                    on_unit(unit.layer, unit.channel, mode)
            bar.update(len(unit.modes) * group.world)
    return total


def _by_image(dn: Deconvnet, transform, root: Path, units: list[Unit], device: torch.device
              ) -> Iterator[tuple[Unit, dict[str, list[Image.Image]]]]:
    """(unit, its cells by mode and "patches") per unit, as soon as all the images it needs are done."""
    wanted: dict[str, list[tuple[int, int]]] = {}  # image -> (unit index, rank of the entry)
    for index, unit in enumerate(units):
        for rank, entry in enumerate(unit.entries):
            wanted.setdefault(entry.image, []).append((index, rank))
    cells: dict[int, dict[str, list]] = {}
    left = [len(unit.entries) for unit in units]
    for name, needs in wanted.items():
        x = transform(open_image(_source(root, name)))[None].to(device)  # (1, 3, H, W)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        picture = transform.to_uint8(x[0])
        # units asking for the same modes share one call (and so one forward pass)
        by_modes: dict[tuple[str, ...], dict[str, list[tuple[int, int]]]] = {}
        for index, rank in needs:
            by_modes.setdefault(units[index].modes, {}).setdefault(units[index].layer, []).append((index, rank))
        for modes, by_layer in by_modes.items():
            requests = {layer: [(0, units[index].channel, units[index].entries[rank].position)
                                for index, rank in pairs] for layer, pairs in by_layer.items()}
            found = dn.project_layers(x, requests, modes=modes)
            for layer, pairs in by_layer.items():
                for row, (index, rank) in enumerate(pairs):
                    unit = units[index]
                    box = dn.box(layer, unit.entries[rank].position, size)
                    slots = cells.setdefault(index, {kind: [None] * len(unit.entries) for kind in
                                                     ("patches", *unit.modes)})
                    slots["patches"][rank] = _cell(np.asarray(render.crop_with_padding(picture, box, fill=0)), CELL)
                    for mode in modes:
                        crop = render.crop_with_padding(found[layer, mode].maps[row].float().cpu(), box, fill=0)
                        slots[mode][rank] = _cell(render.to_display(transform.as_rgb(crop),
                                                                    percentile=DISPLAY_PERCENTILE), CELL)
        for index in sorted({index for index, _ in needs}):
            left[index] -= 1
            if left[index] == 0:
                yield units[index], cells.pop(index)


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
