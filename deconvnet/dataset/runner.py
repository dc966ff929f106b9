"""The one dataset runner: every command that scans an image set (top9, microscope, evolution) composes it.

A :class:`Job` holds what such a command works with: the image set
(:mod:`~deconvnet.dataset.imageset`), the device and a copy of the model on it (the caller's
model is never moved), the output folder and its lock (:mod:`~deconvnet.dataset.folderlock`),
and the torch.distributed group (:mod:`~deconvnet.dataset.distributed`). :meth:`Job.scan` is
the one scan loop: each process takes every world-th image, feeds each layer's scores to
pluggable accumulators (:mod:`~deconvnet.dataset.accumulators`), writes its
:class:`~deconvnet.dataset.checkpoint.Checkpoint` after every batch, and the results of all
processes are merged. A finished scan is recorded (merged, in the runner's own format), so
the same request later returns it without scanning: no command reads its output JSON back.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..engine import Deconvnet
from ..engine.validate import check_integer
from ..errors import DeconvError
from ..fileio import check_writable_dir
from ..models import LoadedModel, load
from ..models.transforms import ImageTransform
from . import folderlock
from .accumulators import Accumulator, batch_scores
from .checkpoint import Checkpoint
from .distributed import Group, join, pick_device
from .imageset import ImageFiles, ImageSet, ImageSources, collate, image_set

Accumulators = Callable[[int], dict[str, Accumulator]]  # channels -> a fresh accumulator per name


@dataclass(frozen=True)
class RunOptions:
    """How a dataset command runs, the same for every one: checked when made.

    >>> RunOptions(batch_size=0)
    Traceback (most recent call last):
    ...
    deconvnet.errors.DeconvError: batch_size must be an integer >= 1, received 0
    """

    device: str = "cpu"
    batch_size: int = 32
    workers: int = 2
    limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', received {self.device!r}")
        check_integer(self.batch_size, "batch_size", minimum=1)
        check_integer(self.workers, "workers", minimum=0)
        if self.limit is not None:
            check_integer(self.limit, "limit", minimum=1)


def model_identity(loaded: LoadedModel) -> str:
    """The weights' SHA-256, or a hash of the parameters when the file is unknown."""
    if loaded.weights_sha256:
        return loaded.weights_sha256
    digest = hashlib.sha256()
    for key, tensor in sorted(loaded.model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "params:" + digest.hexdigest()


def on_device(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    """The caller's model as it is if it already lives on ``device``, else a copy: theirs is never moved."""
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    if all(tensor.device == device for tensor in tensors):
        return loaded
    return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))


def check_output_folder(out: Path) -> None:
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


def warn(message: str, progress: bool) -> None:
    """A warning beside the progress bar, or as a Python warning when there is none."""
    if progress:
        tqdm.write(f"warning: {message}", file=sys.stderr)
    else:
        warnings.warn(message, stacklevel=3)


@dataclass
class Scan:
    """A finished scan: per layer, the merged accumulators by name; the unreadable images (index, reason)."""

    kept: dict[str, dict[str, Any]]
    skipped: list[tuple[int, str]]
    images: int  # images scored
    record: Checkpoint  # the record of the finished scan (the caller may discard it once its files are written)


class Job:
    """One run of a dataset command over ``images`` into ``out_dir``; nothing is written until :meth:`running`.

    >>> job = Job("photos/", "out/", RunOptions(batch_size=8), progress=False)  # doctest: +SKIP
    >>> with job.running():                                                     # doctest: +SKIP
    ...     loaded = job.model("vgg16-hed")
    """

    def __init__(self, images: ImageSources, out_dir: str | os.PathLike, options: RunOptions, *,
                 progress: bool = True) -> None:
        self.options, self.progress = options, progress
        self.out = Path(out_dir)
        self.device = pick_device(options.device)
        check_output_folder(self.out)  # before any work; it is created once the arguments are known to be good
        self.images: ImageSet = image_set(images, exclude=self.out, limit=options.limit)
        self.images.check_readable()
        self.group = Group()

    def model(self, model: str | LoadedModel, weights: Any = None) -> LoadedModel:
        """``model`` loaded (a name) or as given, on the job's device; a caller's model on another device is copied."""
        loaded = on_device(model, self.device) if isinstance(model, LoadedModel) else load(model, weights=weights)
        loaded.model.to(self.device)  # ours (loaded here, or the copy): moving it touches nothing of the caller's
        return loaded

    def settings(self, loaded: LoadedModel, **more: Any) -> dict[str, Any]:
        """What a scan of this image set with ``loaded`` depends on (the model's identity, the images), and ``more``."""
        return {"model": loaded.name, "weights": model_identity(loaded), "transform": loaded.transform.describe(),
                "image list": self.images.digest, "number of images": len(self.images.names), **more}

    @contextlib.contextmanager
    def running(self, *, lock: bool = True) -> Iterator[Job]:
        """The output folder created and locked (by rank 0), the process group joined, for the block.

        An error on one rank reaches the others at their next collective, as their error.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        check_writable_dir(self.out)
        self.group = join(self.device.type)
        held = None
        try:
            held = self._lock() if lock else None
            yield self
        except Exception as error:
            self.group.abort(error)  # the other processes stop at their next step with this error
            raise
        finally:
            if held is not None:
                folderlock.release(held)
            self.group.close()

    def _lock(self) -> Path | None:
        held, error = None, None
        if self.group.leader:
            try:
                held = folderlock.acquire(self.out)
            except DeconvError as problem:
                error = problem
        self.group.raise_if_any(error)
        return held

    def scan(self, dn: Deconvnet, transform: ImageTransform, layers: dict[str, list[int]], accumulators: Accumulators,
             settings: dict[str, Any], *, checkpoint: Path, record: Path, restart: bool = False,
             replaceable: tuple[str, ...] = (), on_batch: Callable[[int], None] | None = None) -> Scan:
        """Scan the image set for ``layers`` ({name: channels}), each fed to fresh ``accumulators(len(channels))``.

        ``checkpoint`` names the per-process checkpoints (``<stem>-rank<R><suffix>``), ``record`` the
        finished scan: under the same ``settings`` it is returned without scanning (``restart`` scans
        anyway). A checkpoint under other settings is refused, naming them, unless they are all in
        ``replaceable`` (then it is discarded). ``on_batch(number)`` is called after each batch, before
        its checkpoint is written. Raises a DeconvError when no image could be read.
        """
        group = self.group
        finished = Checkpoint(record, settings)
        mine = Checkpoint(checkpoint.with_name(f"{checkpoint.stem}-rank{group.rank}{checkpoint.suffix}"),
                          {**settings, "number of processes": group.world})
        if restart:
            mine.discard()
        payload = finished.reusable() if group.leader and not restart else None
        payload = group.broadcast(payload)
        if payload is None:
            payload = self._scan_share(dn, transform, layers, accumulators, mine, replaceable, on_batch)
            if group.leader and len(payload["skipped"]) < len(self.images.paths):
                finished.save(payload)
            group.barrier()
            mine.discard()  # only now: until the scan is recorded, it is the only record of the work
        elif mine.matches():
            mine.discard()  # left by a run stopped right after recording its finished scan
        kept = {layer: {name: _restored(template, payload["kept"][layer][name])
                        for name, template in accumulators(len(layers[layer])).items()} for layer in layers}
        skipped = sorted((int(index), str(reason)) for index, reason in payload["skipped"])
        self.images.refuse_if_unreadable(skipped)
        return Scan(kept, skipped, len(self.images.paths) - len(skipped), finished)

    def _scan_share(self, dn: Deconvnet, transform: ImageTransform, layers: dict[str, list[int]],
                    accumulators: Accumulators, mine: Checkpoint, replaceable: tuple[str, ...],
                    on_batch: Callable[[int], None] | None) -> dict[str, Any]:
        """This process's share of the scan (resumed from its checkpoint), merged with the others' and recorded."""
        group = self.group
        state, error = None, None
        try:
            state = mine.load(replaceable=replaceable)
        except DeconvError as problem:
            error = problem
        group.raise_if_any(error)
        kept = {layer: accumulators(len(channels)) for layer, channels in layers.items()}
        done, skipped = 0, []
        if state is not None:
            kept = {layer: {name: _restored(template, state["kept"][layer][name]) for name, template in acc.items()}
                    for layer, acc in kept.items()}
            done, skipped = int(state["done"]), [(int(i), str(r)) for i, r in state["skipped"]]
        paths = self.images.paths
        shard = list(range(group.rank, len(paths), group.world))
        loader = DataLoader(ImageFiles([(index, paths[index]) for index in shard[done:]], transform),
                            batch_size=self.options.batch_size, num_workers=self.options.workers, collate_fn=collate)
        wanted = {layer: torch.tensor(channels) for layer, channels in layers.items()}
        # Every rank takes the same number of steps, checking before each that no other rank has failed.
        steps = max(group.all_gather(len(loader)))
        with tqdm(total=len(shard), initial=done, desc="scan", unit="img", dynamic_ncols=True,
                  disable=not (self.progress and group.leader)) as bar:
            for number, (indices, x, failed) in enumerate(group.lockstep(loader, steps)):
                for index, reason in failed:
                    warn(f"skipped {paths[index]}: {reason}", self.progress)
                skipped += failed
                if x is not None:
                    outputs = dn.activations(x.to(self.device), list(layers))
                    for layer in layers:
                        values, locate = batch_scores(outputs.pop(layer), wanted[layer])  # (C, B)
                        kept[layer] = {name: acc.add(values, indices, locate) for name, acc in kept[layer].items()}
                done += len(indices) + len(failed)
                if on_batch is not None:
                    on_batch(number)
                mine.save(_payload(kept, skipped, done))
                bar.update(len(indices) + len(failed))
                bar.set_postfix(skipped=len(skipped), refresh=False)
        merged = {layer: accumulators(len(channels)) for layer, channels in layers.items()}
        every: list[tuple[int, str]] = []
        for rank_kept, rank_skipped in group.all_gather(({layer: {n: a.state() for n, a in acc.items()}
                                                          for layer, acc in kept.items()}, skipped)):
            merged = {layer: {name: acc.merged(_restored(acc, rank_kept[layer][name])) for name, acc in accs.items()}
                      for layer, accs in merged.items()}
            every += rank_skipped
        return _payload(merged, sorted(every), len(paths))


def _payload(kept: dict[str, dict[str, Any]], skipped: list[tuple[int, str]], done: int) -> dict[str, Any]:
    return {"done": done, "skipped": [[index, reason] for index, reason in skipped],
            "kept": {layer: {name: acc.state() for name, acc in accs.items()} for layer, accs in kept.items()}}


def _restored(template: Any, state: dict) -> Any:
    return type(template).from_state(state)
