"""Project a channel's top activations and draw them: channel sheets, layer mosaics, the gallery.

Each channel's k images are projected together in one batch, each seeded with its own
activation at its own position. Projection and image patch are cropped to the unit's
receptive field, padded with zeros past the image border, so all crops of a layer have
one size. A sheet is redrawn only when its entries change: the PNG carries a hash of what
it shows in its text metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from ... import render
from ...dataset.images import open_image
from ...dataset.results import ScanResults
from ...engine import Deconvnet
from ...fileio import save_image_atomic
from ...models import LoadedModel
from ..common import folder_names, project_channel
from .gallery import write_gallery

MOSAIC_CHANNELS = 64  # channels per layer mosaic (the first ones); every channel has its own sheet
MOSAIC_SHEET_WIDTH = 480  # wider sheets are scaled down in the mosaic
_KEY = "deconvnet-top9"
_TEMPORARY = re.compile(r"^\.(top9\.json|index\.html|\.top9-[\w.-]+|channel_\d+\.png|mosaic\.png)\.[0-9a-f]{8}\.tmp$")


class ImageCache:
    """Model inputs for image paths, decoded once while they stay among the ``size`` latest."""

    def __init__(self, transform, size: int = 64) -> None:
        self.transform, self.size = transform, size
        self.items: OrderedDict[Path, torch.Tensor] = OrderedDict()

    def __call__(self, path: Path) -> torch.Tensor:
        if path in self.items:
            self.items.move_to_end(path)
        else:
            self.items[path] = self.transform(open_image(path))
            if len(self.items) > self.size:
                self.items.popitem(last=False)
        return self.items[path]


def _stamp(key: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(_KEY, key)
    return info


def _stamped(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            return image.text.get(_KEY)
    except (OSError, ValueError, AttributeError):
        return None


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def render_all(dn: Deconvnet, loaded: LoadedModel, device, results: ScanResults, root: Path, out: Path, mode: str,
               identity: str, group, progress: bool) -> tuple[int, int]:
    """Draw every channel sheet (split across ranks), then the mosaics and the gallery (rank 0).

    Returns (sheets drawn, sheets reused) over all ranks.
    """
    folders = {layer: out / name for layer, name in folder_names(results.layers).items()}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    jobs = [(layer, channel, entries) for layer, table in results.layers.items()
            for channel, entries in table.channels.items() if entries]
    mine, steps = group.share(jobs)
    cache = ImageCache(loaded.transform)
    drawn = reused = 0
    keys = {}
    for layer, channel, entries in jobs:
        keys[layer, channel] = _hash(identity, loaded.transform.describe(), mode, layer, channel,
                                     [e.to_json() for e in entries], render.DISPLAY_PERCENTILE)
    with tqdm(total=len(mine), desc="render", unit="ch", dynamic_ncols=True,
              disable=not (progress and group.leader)) as bar:
        for layer, channel, entries in group.lockstep(mine, steps):
            bar.update()
            path = folders[layer] / f"channel_{channel:04d}.png"
            if _stamped(path) == keys[layer, channel]:
                reused += 1
                continue
            x = torch.stack([cache(_source(root, e.image)) for e in entries]).to(device)
            positions = [e.position for e in entries]
            projections, patches, _, values = project_channel(dn, loaded.transform, x, layer, channel, positions, mode)
            for entry, value in zip(entries, values):
                if not math.isclose(value, entry.value, rel_tol=1e-3, abs_tol=1e-3):
                    tqdm.write(f"warning: {entry.image} gives {value:.5g} at {layer} channel {channel}, not "
                               f"{entry.value:.5g} as scanned: has the file changed?", file=sys.stderr)
            save_image_atomic(path, render.channel_sheet(projections, patches), pnginfo=_stamp(keys[layer, channel]))
            drawn += 1
    counts = group.all_gather((drawn, reused))
    group.barrier()
    if group.leader:
        for layer, folder in folders.items():
            chosen = [c for (name, c) in keys if name == layer][:MOSAIC_CHANNELS]
            if chosen:
                _mosaic(folder, chosen, _hash([keys[layer, c] for c in chosen]))
        write_gallery(out, results, folders, images_root=str(root), mosaic_channels=MOSAIC_CHANNELS)
    group.barrier()
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _source(root: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path


def _mosaic(folder: Path, channels: list[int], key: str) -> None:
    path = folder / "mosaic.png"
    if _stamped(path) == key:
        return
    pictures = []
    for channel in channels:
        with Image.open(folder / f"channel_{channel:04d}.png") as sheet:
            sheet = sheet.convert("RGB")
            if sheet.width > MOSAIC_SHEET_WIDTH:
                height = max(1, round(sheet.height * MOSAIC_SHEET_WIDTH / sheet.width))
                sheet = sheet.resize((MOSAIC_SHEET_WIDTH, height), Image.Resampling.LANCZOS)
            pictures.append(np.asarray(sheet))
    picture = render.mosaic(pictures, [f"ch {c}" for c in channels])
    save_image_atomic(path, picture, pnginfo=_stamp(key))


def remove_temporaries(out: Path) -> None:
    """Delete temporary files a killed run left while writing our outputs (never anything else)."""
    for folder in [out, *(p for p in out.iterdir() if p.is_dir())]:
        for path in folder.iterdir():
            if _TEMPORARY.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)

