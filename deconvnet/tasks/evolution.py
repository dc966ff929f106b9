"""Evolution of features during training (Zeiler & Fergus, ECCV 2014, Sec. 4.1, Fig. 4).

For each checkpoint of one model, in training order, and each chosen channel of a layer:
the single strongest activation of the channel over an image set, projected back to pixels
with the deconvnet and cropped to the unit's receptive field. Rows are channels, columns
are checkpoints; a frame marks a cell whose winning image differs from the previous
checkpoint's, which is where the paper saw features "suddenly" settle.

Each checkpoint's scan is the dataset runner's (:mod:`deconvnet.dataset.runner`) with a
top-k accumulator of k = 1: all channels in one pass, checkpointed after every batch, resumed
after an interruption, reused when finished (its record, never a JSON file, is read back), in
``OUT/scans/<NNN>-<checkpoint>/``. Output::

    OUT/evolution.json   {"model", "layer", "mode", "channels", "images",
                          "checkpoints": [{"checkpoint": path, "weights_sha256",
                                           "channels": {"<c>": {"image", "y", "x", "value", "changed"}}}]}
    OUT/evolution.png    the figure

``image`` is relative to the image folder (or the list file's folder), ``y``, ``x`` index
the layer's map (null for a fully connected layer), ``value`` is the activation, and
``changed`` says whether the winning image differs from the previous checkpoint's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..channels import ChannelSelection, channel_numbers, select_channels
from ..dataset.accumulators import TopK
from ..dataset.images import open_image
from ..dataset.imageset import ImageSources, read_list
from ..dataset.results import Entry
from ..dataset.runner import Job, RunOptions
from ..engine import Deconvnet
from ..errors import DeconvError
from ..fileio import save_figure_atomic, write_json_atomic
from ..models import DEFAULT_MODEL, RANDOM, load, load_checked, read_state_dict
from .common import project_channel

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
RESULTS = "evolution.json"
FIGURE = "evolution.png"
SCAN_CHECKPOINT = ".scan-checkpoint.pt"  # in OUT/scans/<NNN>-<checkpoint>/, one per process
SCAN_RECORD = ".scan.pt"  # the finished scan of that checkpoint


def natural_key(name: str) -> list:
    """Sort key that orders numbers by value: epoch2 before epoch10.

    >>> sorted(["epoch10.pt", "epoch2.pt", "epoch1.pt"], key=natural_key)
    ['epoch1.pt', 'epoch2.pt', 'epoch10.pt']
    """
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name) if part]


def list_checkpoints(source: str | os.PathLike) -> list[Path]:
    """Checkpoint files in training order: a folder's weight files sorted naturally by name, or the
    paths of a list file (one per line, relative to its folder; '#' starts a comment)."""
    source = Path(source)
    if source.is_dir():
        found = sorted((p for p in source.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES),
                       key=lambda p: natural_key(p.name))
        if not found:
            raise DeconvError(f"no checkpoints in {source}: expected files ending in {', '.join(CHECKPOINT_SUFFIXES)}")
        return found
    if source.is_file():
        if source.suffix.lower() in CHECKPOINT_SUFFIXES:
            return [source]
        paths = read_list(source)
        if not paths:
            raise DeconvError(f"the list file {source} names no checkpoints")
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            raise FileNotFoundError(f"checkpoints listed in {source} not found: {', '.join(absent[:5])}")
        return paths
    raise FileNotFoundError(f"no checkpoint folder or list file at {source}")


def check_checkpoints(model: str, paths: Sequence[Path]) -> None:
    """Refuse, naming the checkpoint and the keys and shapes that do not fit, any file that is not a
    state dict of ``model``'s architecture (read safely, like ``--weights``)."""
    network = load(model, weights=RANDOM).model  # any name load takes: registered, timm:NAME or hf:FOLDER
    for number, path in enumerate(paths, start=1):
        try:
            load_checked(network, read_state_dict(path), path)
        except DeconvError as error:
            raise DeconvError(f"checkpoint {number} of {len(paths)} ({path}): {error}") from None


@dataclass
class Winner:
    """A channel's strongest activation over the image set at one checkpoint."""

    image: str
    position: tuple[int, int] | None
    value: float
    changed: bool  # the winning image differs from the previous checkpoint's

    @classmethod
    def of(cls, entry: Entry, previous: Winner | None) -> Winner:
        return cls(entry.image, entry.position, entry.value, previous is not None and previous.image != entry.image)

    def to_json(self) -> dict:
        return {**Entry(self.image, self.position, self.value).to_json(), "changed": self.changed}


@dataclass
class Evolution:
    """What ``evolution`` did: per checkpoint, per channel, the winner and its projection crop."""

    figure: Path
    results: Path
    model: str
    layer: str
    channels: list[int]
    checkpoints: list[Path]
    winners: list[dict[int, Winner]]  # [checkpoint][channel]
    images: int


def evolution(
    checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
    images: ImageSources,
    out_dir: str | os.PathLike,
    *,
    layer: str,
    channels: ChannelSelection = range(8),
    model: str = DEFAULT_MODEL,
    mode: str = "deconvnet",
    batch_size: int = 32,
    workers: int = 0,
    limit: int | None = None,
    device: str = "cpu",
    restart: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> Evolution:
    """The paper's Fig. 4 for the checkpoints of ``model`` (a folder, a list file, or a list of paths).

    Every checkpoint is loaded safely, like ``--weights`` (safetensors, or ``torch.load``
    with ``weights_only=True``); one for another architecture is refused with the keys
    and shapes that do not fit. ``images`` is a folder, a list file, one image, or a list of these. Writes
    ``out_dir/evolution.json`` and ``out_dir/evolution.png``; ``on_batch(number)`` is called
    after each scanned batch.

    >>> evolution("runs/tiny/checkpoints", "runs/tiny/images", "out", model="tiny-zfnet",
    ...           layer="conv2", channels=range(8))                              # doctest: +SKIP
    """
    channel_numbers(channels)  # its type, before any checkpoint loads
    options = RunOptions(device=device, batch_size=batch_size, workers=workers, limit=limit)
    if isinstance(checkpoints, (list, tuple)):
        paths = [Path(p) for p in checkpoints]
    else:
        paths = list_checkpoints(checkpoints)  # type: ignore[arg-type]
    if not paths:
        raise DeconvError("expected at least one checkpoint, received none")
    job = Job(images, out_dir, options, progress=progress)
    out = job.out
    winners: list[dict[int, Winner]] = []
    cells: list[dict[int, np.ndarray]] = []
    records = []
    chosen: list[int] = []
    image_count = 0
    check_checkpoints(model, paths)  # before any scan: a wrong file fails now, not after hours
    with job.running():
        for number, path in enumerate(tqdm(paths, desc="checkpoints", unit="ckpt", disable=not progress)):
            loaded = job.model(model, weights=path)
            scan_dir = out / "scans" / f"{number:03d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', path.stem)}"
            scan_dir.mkdir(parents=True, exist_ok=True)
            with Deconvnet(loaded.model) as dn:
                probe = dn.activations(torch.zeros(0, 3, *loaded.transform.input_size, device=job.device), [layer])
                chosen = select_channels(channels, probe[layer].shape[1], layer, categories=loaded.categories,
                                         model=loaded.name)
                width = probe[layer].shape[-1] if probe[layer].dim() == 4 else None
                scan = job.scan(dn, loaded.transform, {layer: chosen}, lambda count: {"top": TopK.empty(count, 1)},
                                job.settings(loaded, layers=[layer], channels={layer: chosen}, k=1),
                                checkpoint=scan_dir / SCAN_CHECKPOINT, record=scan_dir / SCAN_RECORD,
                                restart=restart, on_batch=on_batch)
                best = scan.kept[layer]["top"].entries(chosen, width, job.images.names)
                image_count = scan.images
                previous = winners[-1] if winners else {}
                current = {channel: Winner.of(best[channel][0], previous.get(channel)) for channel in chosen}
                crops: dict[int, np.ndarray] = {}
                for channel, winner in current.items():
                    x = loaded.transform(open_image(job.images.source(winner.image)))[None].to(job.device)
                    projections, _, _, _ = project_channel(dn, loaded.transform, x, layer, channel,
                                                           [winner.position], mode)
                    crops[channel] = projections[0]
            winners.append(current)
            cells.append(crops)
            records.append({"checkpoint": str(path), "weights_sha256": loaded.weights_sha256,
                            "channels": {str(c): w.to_json() for c, w in current.items()}})
        if not job.group.leader:
            return Evolution(out / FIGURE, out / RESULTS, model, layer, chosen, paths, winners, image_count)
        results_path = write_json_atomic(out / RESULTS, {"model": model, "layer": layer, "mode": mode,
                                                         "channels": chosen, "images": image_count,
                                                         "checkpoints": records})
        figure = evolution_figure(cells, winners, [p.stem for p in paths], chosen,
                                  title=f"{model} {layer}: the strongest activation of each channel over "
                                        f"{image_count} images, projected ({mode}), per checkpoint")
        figure_path = save_figure_atomic(out / FIGURE, figure)
    return Evolution(figure_path, results_path, model, layer, chosen, paths, winners, image_count)


def evolution_figure(cells: Sequence[dict[int, np.ndarray]], winners: Sequence[dict[int, Winner]],
                     labels: Sequence[str], channels: Sequence[int], *, title: str):
    """Rows: channels; columns: checkpoints. A red frame marks a cell whose winning image changed.

    The cells (uint8 (h, w, 3) crops, one size per layer) are laid out on one canvas and
    drawn as a single image: a grid of axes would cost seconds per hundred cells.
    """
    from ..render.figures import new_figure, outline_box

    rows, cols = len(channels), len(cells)
    height = max(cell.shape[0] for column in cells for cell in column.values())
    width = max(cell.shape[1] for column in cells for cell in column.values())
    gap = max(height, width) // 6 + 2
    canvas = np.full((rows * (height + gap) + gap, cols * (width + gap) + gap, 3), 255, np.uint8)
    for col in range(cols):
        for row, channel in enumerate(channels):
            cell = cells[col][channel]
            top, left = gap + row * (height + gap), gap + col * (width + gap)
            canvas[top:top + cell.shape[0], left:left + cell.shape[1]] = cell
    figure = new_figure(0.9 * cols + 1.2, 0.9 * rows + 1.0)
    ax = figure.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    for col in range(cols):
        for row, channel in enumerate(channels):
            if winners[col][channel].changed:
                top, left = gap + row * (height + gap), gap + col * (width + gap)
                outline_box(ax, (top, left, height, width), margin=gap / 3, linewidth=2.0)
    ax.set_xticks([gap + col * (width + gap) + width / 2 for col in range(cols)], list(labels), fontsize=7)
    ax.set_yticks([gap + row * (height + gap) + height / 2 for row in range(rows)],
                  [f"ch {channel}" for channel in channels], fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    figure.suptitle(f"{title}\nred frame: the winning image changed since the previous checkpoint", fontsize=8)
    return figure
