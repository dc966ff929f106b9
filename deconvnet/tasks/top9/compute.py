"""The top-9 feature (Zeiler & Fergus 2014, Fig. 2): each channel's strongest images, projected.

One pass over a data set keeps, for every requested channel of every requested layer, the
k images that activate it most (see :mod:`deconvnet.dataset.scan`). Each of those activations is
then projected to pixel space with the deconvnet and shown beside the image patch that
caused it, both cropped to the unit's receptive field (see :mod:`deconvnet.tasks.top9.sheets`).

Output folder::

    OUT/top9.json                       the results (format below)
    OUT/<layer>/channel_<NNNN>.png      one channel: k projections beside k image patches
    OUT/<layer>/mosaic.png              the first channels of the layer on one sheet
    OUT/index.html                      a static gallery of all of it (opens offline)

``top9.json``::

    {"model": "vgg16-hed",             # registry name of the model
     "weights_sha256": "..." | null,   # SHA-256 of the weights file, null if unknown
     "mode": "deconvnet",              # projection rule: deconvnet, guided or backprop
     "transform": {...},               # the preprocessing (ImageTransform fields)
     "images": 200,                    # images scored (unreadable files excluded)
     "layers": {"<layer as given>": {"<channel>": [
         {"image": "<path relative to IMAGES, posix>", "y": 12, "x": 40, "value": 87.5},
         ...]}}}                       # up to k entries, best first

``y``, ``x`` index the layer's activation map (first maximum in row-major order); both
are null for a one-dimensional (fully connected) layer. Values within the tie tolerance of
:mod:`deconvnet.dataset.scan` count as equal, and ties go to the image that comes first in the
image list (sorted paths for a folder, file order for a list file).
Paths are relative to the IMAGES folder, or to the folder of the list file when IMAGES is
one; an image outside it (an absolute path in a list file) keeps its absolute path. ``value``
is the raw activation (float32), the seed of that entry's projection.

The scan checkpoints itself (``OUT/.top9-checkpoint-rank<R>.pt``) after every batch: the
same command resumes after Ctrl-C or a crash, with the batches an uninterrupted run would
have had; ``restart=True`` discards the checkpoint and scans again. A finished scan is
recorded in ``OUT/.top9-scan.json``, so a re-run with the same settings (the mode may differ:
the scan does not depend on it) goes straight to rendering, which redraws only the sheets
whose entries changed. ``OUT/.top9.lock`` keeps a second run out of the folder meanwhile.
Under ``torchrun --nproc-per-node N`` the images are split across the processes (results
equal one process's up to float32 rounding, which the tie tolerance absorbs) and so are
the channels to render; a process that fails stops all of them with its error.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ...dataset import folderlock
from ...dataset.distributed import Group, join, pick_device
from ...dataset.images import IMAGE_SUFFIXES, list_images
from ...dataset.scan import ImageFiles, ScanState, TopK, batch_scores, collate, remove
from ...engine import Deconvnet
from ...engine.relu import check_mode
from ...engine.validate import check_channels, check_integer
from ...errors import DeconvError
from ...fileio import check_writable_dir, write_json_atomic
from ...models import LoadedModel, load
from . import sheets

RESULTS = "top9.json"
_DONE = ".top9-scan.json"  # the finished scan's settings, so a re-run goes straight to rendering
_on_batch: Callable[[int], None] | None = None  # test hook, called after each merged batch


@dataclass
class Top9Summary:
    """What a run did. ``skipped`` lists (path, reason) for files that could not be used."""

    out_dir: Path
    results_path: Path
    images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rendered: int = 0
    reused: int = 0


def parse_channels(spec: str, count: int) -> list[int]:
    """Channels from "all" or a spec like "0-15,40" (ranges inclusive), sorted, each once.

    >>> parse_channels("0-3,10,2", 64)
    [0, 1, 2, 3, 10]
    """
    text = str(spec).strip()
    if text.lower() == "all":
        return list(range(count))
    chosen: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise DeconvError(f"cannot read channel spec {spec!r} at {part.strip()!r}: expected 'all' or "
                              f"numbers and ranges like '0-15,40' (valid channels: 0-{count - 1})")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise DeconvError(f"channel range {part.strip()!r} runs backwards: write it as '{high}-{low}'")
        chosen.update(range(low, high + 1))
    return check_channels(sorted(chosen, reverse=True), count)  # the highest bad channel is named


def _channels_for(channels: str | Sequence[int], count: int) -> list[int]:
    if isinstance(channels, str):
        return parse_channels(channels, count)
    return check_channels(channels, count)


def _list_images(images, out_dir: Path, limit: int | None) -> tuple[Path, list[Path], list[tuple[str, str]]]:
    """(the root names are relative to, the images, [(path, reason)] for other files in a folder)."""
    source = Path(images)
    if not source.exists():
        raise DeconvError(f"no image folder or list file at {source}")
    out = out_dir.resolve()
    # Each file once (a list file may repeat one), and never our own output.
    paths = [p for p in dict.fromkeys(list_images(source)) if out not in p.resolve().parents]
    others = []
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(source).parts)
            if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES and not hidden \
                    and out not in path.resolve().parents:
                others.append((str(path), f"not an image file (suffix {path.suffix or 'none'!r})"))
    paths = paths[:limit] if limit is not None else paths
    if not paths:
        raise DeconvError(f"no images found in {source} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return (source if source.is_dir() else source.parent), paths, others


def _check_output_folder(out: Path) -> None:
    """A clear error now, rather than after the scan, if ``out`` cannot be used or created."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == out else f"cannot be created: {str(existing)!r} is a file"
        raise NotADirectoryError(f"output folder {str(out)!r} {where}; choose a folder (it is created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == out else f"cannot be created: {str(existing)!r} is not writable"
        raise PermissionError(f"output folder {str(out)!r} {where}; fix the permissions or choose another folder")


def _name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.absolute().as_posix()


def _model_identity(loaded: LoadedModel) -> str:
    """The weights' SHA-256, or a hash of the parameters when the file is unknown."""
    if loaded.weights_sha256:
        return loaded.weights_sha256
    digest = hashlib.sha256()
    for key, tensor in sorted(loaded.model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "params:" + digest.hexdigest()


def _on_device(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    """The caller's model as it is if it already lives on ``device``, else a copy: theirs is never moved."""
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    if all(tensor.device == device for tensor in tensors):
        return loaded
    return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))


def _warn(message: str, progress: bool) -> None:
    if progress:
        tqdm.write(f"warning: {message}", file=sys.stderr)
    else:
        warnings.warn(message, stacklevel=3)


def top9(images, out_dir, *, layers: Sequence[str], channels: str | Sequence[int] = "all", k: int = 9,
         model: str | LoadedModel = "vgg16-hed", weights=None, mode: str = "deconvnet", batch_size: int = 32,
         workers: int = 2, limit: int | None = None, device: str = "cpu", restart: bool = False,
         progress: bool = True, render: bool = True) -> Top9Summary:
    """Find each channel's k strongest images in ``images`` and render them into ``out_dir``.

    See the module docstring for the outputs and the format of ``top9.json``;
    ``render=False`` stops after writing it (the scan alone). A ``LoadedModel`` passed as
    ``model`` is only read: when it lives on another device than ``device``, a copy is used.

    >>> top9("photos/", "out/", layers=["conv3_3"], channels="0-15")           # doctest: +SKIP
    """
    layers = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not layers:
        raise DeconvError("expected at least one layer, received none")
    for name, value, low in (("k", k, 1), ("batch_size", batch_size, 1), ("workers", workers, 0),
                             ("limit", 1 if limit is None else limit, 1)):
        check_integer(value, name, minimum=low)
    check_mode(mode)
    out = Path(out_dir)
    dev = pick_device(device)
    _check_output_folder(out)  # before any work; it is created once the arguments are known to be good
    root, paths, others = _list_images(images, out, limit)
    names = [_name(p, root) for p in paths]
    loaded = _on_device(model, dev) if isinstance(model, LoadedModel) else load(model, weights=weights)
    loaded.model.to(dev)  # ours (loaded here, or the copy): moving it touches nothing of the caller's
    dn = Deconvnet(loaded.model)
    probe = dn.activations(torch.zeros(0, 3, *loaded.transform.input_size, device=dev), layers)  # shapes only
    chosen = {layer: _channels_for(channels, probe[layer].shape[1]) for layer in layers}
    widths = {layer: probe[layer].shape[-1] if probe[layer].dim() == 4 else None for layer in layers}
    out.mkdir(parents=True, exist_ok=True)
    check_writable_dir(out)
    group = join(dev.type)
    lock = None
    try:
        lock = _lock(out, group)  # before the clean-up below, which would delete another run's temporary files
        identity = _model_identity(loaded)
        # What the scan depends on. Not the mode: it only changes the projections, drawn afterwards.
        settings = {
            "model": loaded.name, "weights": identity, "transform": loaded.transform.describe(),
            "layers": layers, "channels": chosen, "k": k,
            "image list": hashlib.sha256("\n".join(names).encode()).hexdigest(), "number of images": len(names)}
        # A checkpoint holds one process's share, so it also depends on how many there are.
        fingerprint = json.dumps({**settings, "number of processes": group.world})
        run = _Run(dn, loaded, dev, paths, names, chosen, widths, k, mode, out, group, json.dumps(settings),
                   fingerprint, progress)
        if group.leader:
            sheets.remove_temporaries(out)
        group.barrier()
        results, bad = _scan_or_reuse(run, batch_size, workers, restart)
        skipped = [(str(paths[index]), reason) for index, reason in bad] + others
        rendered, reused = (sheets.render_all(dn, loaded, dev, results, root, out, mode, identity, group, progress)
                            if render else (0, 0))
        return Top9Summary(out, out / RESULTS, results["images"], skipped, rendered, reused)
    except Exception as error:
        group.abort(error)  # the other processes stop at their next step with this error, not wait forever
        raise
    finally:
        if lock is not None:
            folderlock.release(lock)
        group.close()


def _lock(out: Path, group: Group) -> Path | None:
    """The output folder's lock, taken by rank 0 for the whole job; every rank raises if it is held."""
    lock, error = None, None
    if group.leader:
        try:
            lock = folderlock.acquire(out)
        except DeconvError as problem:
            error = problem
    group.raise_if_any(error)
    return lock


@dataclass
class _Run:
    """What one call works with, all fixed before the scan starts."""

    dn: Deconvnet
    loaded: LoadedModel
    device: torch.device
    paths: list[Path]
    names: list[str]  # as written in top9.json
    chosen: dict[str, list[int]]  # layer -> channels
    widths: dict[str, int | None]  # layer -> activation map width (None: one-dimensional)
    k: int
    mode: str
    out: Path
    group: Group
    settings: str  # JSON of what the results depend on
    fingerprint: str  # ... and of how the work is split: what a checkpoint depends on
    progress: bool

    @property
    def checkpoint(self) -> Path:
        return self.out / f".top9-checkpoint-rank{self.group.rank}.pt"


def _scan_or_reuse(run: _Run, batch_size: int, workers: int, restart: bool) -> tuple[dict, list[tuple[int, str]]]:
    """The merged results and the unreadable (index, reason): from a finished scan if one matches."""
    group = run.group
    finished = _finished_scan(run.out, run.settings) if group.leader and not restart else None
    finished = group.broadcast(finished)
    if finished is not None:
        if run.checkpoint.exists() and ScanState.fingerprint_of(run.checkpoint) == run.fingerprint:
            remove(run.checkpoint)  # left by a run stopped right after writing its results
        results = finished["results"]
        reused: list[tuple[int, str]] = [(int(index), str(reason)) for index, reason in finished["skipped"]]
        if results.get("mode") != run.mode:  # the same scan, drawn with another rule
            results = {**results, "mode": run.mode}
            if group.leader:
                _write_results(run, results, reused)
            group.barrier()
        return results, reused
    state = _scan(run, batch_size, workers, restart)
    kept = {layer: TopK.empty(len(channels), run.k) for layer, channels in run.chosen.items()}
    skipped: list[tuple[int, str]] = []
    for rank_kept, rank_skipped in group.all_gather((state.kept, state.skipped)):
        kept = {layer: kept[layer].merged(rank_kept[layer]) for layer in kept}
        skipped += rank_skipped
    skipped.sort()
    results = {"model": run.loaded.name, "weights_sha256": run.loaded.weights_sha256, "mode": run.mode,
               "transform": run.loaded.transform.describe(), "images": len(run.paths) - len(skipped),
               "layers": {layer: kept[layer].entries(run.chosen[layer], run.widths[layer], run.names)
                          for layer in run.chosen}}
    if group.leader:
        _write_results(run, results, skipped)
    group.barrier()
    remove(run.checkpoint)  # only now: until the results are written, it is the only record of the work
    return results, skipped


def _write_results(run: _Run, results: dict, skipped: list) -> None:
    """top9.json, then the record of the finished scan that lets a re-run skip it."""
    path = write_json_atomic(run.out / RESULTS, results)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    write_json_atomic(run.out / _DONE, {"settings": run.settings, "results_sha256": digest, "skipped": skipped})


def _finished_scan(out: Path, settings: str) -> dict | None:
    try:
        done = json.loads((out / _DONE).read_text(encoding="utf-8"))
        data = (out / RESULTS).read_bytes()
    except (OSError, ValueError):
        return None
    if done.get("settings") != settings or hashlib.sha256(data).hexdigest() != done.get("results_sha256"):
        return None
    return {"results": json.loads(data), "skipped": done.get("skipped", [])}


def _scan(run: _Run, batch_size: int, workers: int, restart: bool) -> ScanState:
    """This process's share of the scan, resumed from its checkpoint when there is one."""
    if restart:
        remove(run.checkpoint)
    state, error = None, None
    if run.checkpoint.exists():
        try:
            state = ScanState.load(run.checkpoint)
            state.check(run.fingerprint, run.checkpoint)
        except DeconvError as problem:
            error = problem
    run.group.raise_if_any(error)
    if state is None:
        state = ScanState(run.fingerprint, 0, {layer: TopK.empty(len(c), run.k) for layer, c in run.chosen.items()}, [])
    shard = list(range(run.group.rank, len(run.paths), run.group.world))
    items = [(index, run.paths[index]) for index in shard[state.done:]]
    loader = DataLoader(ImageFiles(items, run.loaded.transform), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate)
    wanted = {layer: torch.tensor(c) for layer, c in run.chosen.items()}
    layers = list(run.chosen)
    # Every rank takes the same number of steps, checking after each that no other rank has failed.
    steps = max(run.group.all_gather(len(loader)))
    batches = iter(loader)
    with tqdm(total=len(shard), initial=state.done, desc="scan", unit="img", dynamic_ncols=True,
              disable=not (run.progress and run.group.leader)) as bar:
        for number in range(steps):
            run.group.check()
            batch = next(batches, None)
            if batch is None:  # this rank's share is done; the others' is not
                continue
            indices, x, failed = batch
            for index, reason in failed:
                _warn(f"skipped {run.paths[index]}: {reason}", run.progress)
            state.skipped += failed
            if x is not None:
                activations = run.dn.activations(x.to(run.device), layers)
                for layer in layers:
                    values, positions = batch_scores(activations[layer], wanted[layer])
                    state.kept[layer] = state.kept[layer].merge(values, indices.expand_as(values), positions)
            state.done += len(indices) + len(failed)
            if _on_batch is not None:
                _on_batch(number)
            state.save(run.checkpoint)
            bar.update(len(indices) + len(failed))
            bar.set_postfix(skipped=len(state.skipped), refresh=False)
    run.group.check()
    return state
