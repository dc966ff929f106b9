"""The top-9 feature (Zeiler & Fergus 2014, Fig. 2): each channel's strongest images, projected.

One pass over a data set keeps, for every requested channel of every requested layer, the
k images that activate it most (the dataset runner :mod:`deconvnet.dataset.runner` with the
top-k accumulator of :mod:`deconvnet.dataset.accumulators`). Each of those activations is then
projected to pixel space with the deconvnet and shown beside the image patch that
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
:mod:`deconvnet.dataset.accumulators` count as equal, and ties go to the image that comes first in the
image list (sorted paths for a folder, file order for a list file).
Paths are relative to the IMAGES folder, or to the folder of the list file when IMAGES is
one; an image outside it (an absolute path in a list file) keeps its absolute path. ``value``
is the raw activation (float32), the seed of that entry's projection.

The scan checkpoints itself (``OUT/.top9-checkpoint-rank<R>.pt``) after every batch: the
same command resumes after Ctrl-C or a crash, with the batches an uninterrupted run would
have had; ``restart=True`` discards the checkpoint and scans again. A finished scan is
recorded in ``OUT/.top9-scan.pt`` (the runner's merged state; top9.json is never read back), so
a re-run with the same settings (the mode may differ: the scan does not depend on it) goes
straight to rendering, which redraws only the sheets whose entries changed. ``OUT/.top9.lock``
keeps a second run out of the folder meanwhile.
Under ``torchrun --nproc-per-node N`` the images are split across the processes (results
equal one process's up to float32 rounding, which the tie tolerance absorbs) and so are
the channels to render; a process that fails stops all of them with its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ...channels import ChannelSelection, channel_numbers, select_channels
from ...dataset.accumulators import TopK
from ...dataset.imageset import ImageSources
from ...dataset.results import LayerResults, ScanResults
from ...dataset.runner import Job, RunOptions
from ...engine import Deconvnet
from ...engine.relu import check_mode
from ...engine.validate import check_integer
from ...errors import DeconvError
from ...fileio import write_json_atomic
from ...models import LoadedModel
from . import sheets

RESULTS = "top9.json"
CHECKPOINT = ".top9-checkpoint.pt"  # one per process: .top9-checkpoint-rank<R>.pt
RECORD = ".top9-scan.pt"  # the finished scan, so a re-run goes straight to rendering


@dataclass
class Top9Summary:
    """What a run did. ``skipped`` lists (path, reason) for files that could not be used."""

    out_dir: Path
    results_path: Path
    images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rendered: int = 0
    reused: int = 0
    results_paths: list[Path] = field(default_factory=list)  # one per mode, in the order given


def top9(images: ImageSources, out_dir, *, layers: Sequence[str], channels: ChannelSelection = "all", k: int = 9,
         model: str | LoadedModel = "vgg16-hed", weights=None, mode: str | Sequence[str] = "deconvnet",
         batch_size: int = 32, workers: int = 2, limit: int | None = None, device: str = "cpu", restart: bool = False,
         progress: bool = True, render: bool = True, on_batch: Callable[[int], None] | None = None) -> Top9Summary:
    """Find each channel's k strongest images in ``images`` and render them into ``out_dir``.

    ``images`` is a folder (searched recursively), a list file, one image, or a list of these. See the module
    docstring for the outputs and the format of ``top9.json``; ``render=False`` stops after
    writing it (the scan alone). A ``LoadedModel`` passed as ``model`` is only read: when it
    lives on another device than ``device``, a copy is used. ``on_batch(number)`` is called
    after each scanned batch (before its checkpoint is written).

    ``channels`` is a :data:`deconvnet.channels.ChannelSelection`: channel numbers
    (``range(16)``), ``"all"`` or ``ClassChannels("tabby")`` at a classifier's output.
    ``mode`` is one projection rule or several (``["deconvnet", "guided"]``): the scan runs
    once, and each mode of several gets ``out_dir/<mode>/``, what a run of that mode alone
    writes in ``out_dir`` (its ``top9.json``, sheets, mosaics and gallery).

    >>> top9("photos/", "out/", layers=["conv3_3"], channels=range(16))        # doctest: +SKIP
    """
    layers = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not layers:
        raise DeconvError("expected at least one layer, received none")
    check_integer(k, "k", minimum=1)
    channel_numbers(channels)  # its type, before the model loads
    options = RunOptions(device=device, batch_size=batch_size, workers=workers, limit=limit)
    modes = list(dict.fromkeys([mode] if isinstance(mode, str) else mode))
    if not modes:
        raise DeconvError("expected at least one mode (deconvnet, guided or backprop), received none")
    for one in modes:
        check_mode(one)
    job = Job(images, out_dir, options, progress=progress)
    loaded = job.model(model, weights)
    dn = Deconvnet(loaded.model)
    probe = dn.activations(torch.zeros(0, 3, *loaded.transform.input_size, device=job.device), layers)  # shapes only
    chosen = {layer: select_channels(channels, probe[layer].shape[1], layer, categories=loaded.categories,
                                     model=loaded.name) for layer in layers}
    widths = {layer: probe[layer].shape[-1] if probe[layer].dim() == 4 else None for layer in layers}
    out = job.out
    folders = {modes[0]: out} if len(modes) == 1 else {one: out / one for one in modes}
    with job.running():
        if job.group.leader:  # after the lock: it would delete another run's temporary files
            for folder in folders.values():
                folder.mkdir(exist_ok=True)
                sheets.remove_temporaries(folder)
        job.group.barrier()
        # What the scan depends on. Not the mode: it only changes the projections, drawn afterwards.
        settings = job.settings(loaded, layers=layers, channels=chosen, k=k)
        scan = job.scan(dn, loaded.transform, chosen, lambda count: {"top": TopK.empty(count, k)}, settings,
                        checkpoint=out / CHECKPOINT, record=out / RECORD, restart=restart, on_batch=on_batch)
        names = job.images.names
        tables = {layer: LayerResults(layer, scan.kept[layer]["top"].entries(chosen[layer], widths[layer], names))
                  for layer in layers}
        rendered = reused = 0
        for one, folder in folders.items():  # the same entries, projected under each rule
            results = ScanResults(loaded.name, loaded.weights_sha256, one, loaded.transform.describe(), scan.images,
                                  tables)
            if job.group.leader:
                write_json_atomic(folder / RESULTS, results.to_json())
            job.group.barrier()
            drawn, kept = (sheets.render_all(dn, loaded, job.device, results, job.images.root, folder, one,
                                             settings["weights"], job.group, progress) if render else (0, 0))
            rendered, reused = rendered + drawn, reused + kept
        skipped = [(str(job.images.paths[index]), reason) for index, reason in scan.skipped] + job.images.others
        paths = [folder / RESULTS for folder in folders.values()]
        return Top9Summary(out, paths[0], scan.images, skipped, rendered, reused, paths)
