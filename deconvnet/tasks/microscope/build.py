"""Build or extend a microscope site: scan the new layers, project the new units, write the pages.

The site's settings (model and weights, transform, image list, k, labels) are fixed when it
is first built; a later build with the same settings adds layers, channels and modes,
computing only what is missing: the channels without scan results are scanned (all layers in
one pass of the dataset runner, :mod:`deconvnet.dataset.runner`), units without strips are
projected, and the pages are rewritten. Every step leaves complete files, so an interrupted
build resumes where it stopped and ends with the same site. Under ``torchrun
--nproc-per-node N`` the scan and the projections are split between the processes; rank 0
writes the data files, sprites and pages.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ...channels import ChannelSelection, ClassChannels, Strongest, channel_numbers, describe_count, select_channels
from ...dataset.accumulators import Histograms, TopK
from ...dataset.imageset import ImageSources
from ...dataset.results import LayerResults
from ...dataset.runner import Job, RunOptions
from ...engine import Deconvnet
from ...engine.relu import check_mode
from ...engine.validate import check_integer
from ...errors import DeconvError
from ...fileio import write_json_atomic
from ...models import LoadedModel, class_index
from ..common import folder_names
from . import featurevis as pictures
from . import site, thumbnails
from .labels import read_labels, selectivity

DATA = "data"
MANIFEST = "site.json"  # data/site.json: the settings, layers, channels and modes of the site
SITE_FORMAT = 2  # of site.json: 2 lists each layer's channels (format 1 kept "channels" among the settings)
RESULTS = "top9.json"  # data/top9.json: every layer's results in the top9.json format, extended
CHECKPOINT = ".scan-checkpoint.pt"  # one per process: .scan-checkpoint-rank<R>.pt
RECORD = ".scan-finished.pt"  # the finished scan, until the layers' data files are written


@dataclass
class MicroscopeSummary:
    """What a build did. ``skipped`` lists (path, reason) for files that could not be used."""

    site: Path
    layers: list[str]
    modes: list[str]
    images: int
    scanned: list[str] = field(default_factory=list)  # layers scanned by this build
    projected: int = 0  # unit strips computed by this build
    optimized: int = 0  # feature visualizations made by this build
    skipped: list[tuple[str, str]] = field(default_factory=list)


def default_layers(dn: Deconvnet) -> list[str]:
    """"all": every convolution and fully connected layer, in forward order."""
    return [layer.name for layer in dn.graph.layers if isinstance(layer.module, (nn.Conv2d, nn.Linear))]


def _channels_of(channels: ChannelSelection, layer: str, count: int, loaded: LoadedModel) -> list[int]:
    """The selection's channels that ``layer`` has: each layer of a site takes those of the listed
    channels it has ("all": every one); a layer that has none of them is an error naming its count."""
    chosen = channel_numbers(channels)
    if chosen == "all" or isinstance(chosen, Strongest):
        return select_channels(chosen, count, layer)  # Strongest: refused, naming the layer's count
    if isinstance(chosen, ClassChannels):
        chosen = [class_index(name, loaded.categories, loaded.name) for name in chosen.names]
    present = sorted({c for c in chosen if c < count})
    if not present:
        raise DeconvError(f"none of the channels {channels!r} exists in layer {layer}: {describe_count(count, layer)}")
    return present


def microscope(images: ImageSources, site_dir, *, layers: str | Sequence[str] = "all",
               modes: Sequence[str] = ("deconvnet",), k: int = 9, labels=None,
               model: str | LoadedModel = "vgg16-hed", weights=None,
               channels: ChannelSelection = "all", batch_size: int = 8, workers: int = 2,
               limit: int | None = None, device: str = "cpu", restart: bool = False, progress: bool = True,
               on_batch: Callable[[int], None] | None = None,
               on_unit: Callable[[str, int, str], None] | None = None,
               featurevis: bool | pictures.FeaturevisSettings | dict | None = False) -> MicroscopeSummary:
    """Build (or extend) a static site of every unit of ``layers`` over ``images`` in ``site_dir``.

    ``layers`` is "all" (every convolution and fully connected layer) or names/aliases;
    ``modes`` the projection rules; ``labels`` a TSV file (``file<TAB>label``), else the
    images' sub-folder names are their labels. ``channels`` is a :data:`deconvnet.channels.ChannelSelection`
    ("all", ``range(16)``, a list; each layer takes those it has): a later build with more
    channels (or layers, or modes) extends the site, computing only what is new. Under
    ``torchrun --nproc-per-node N`` the scan and the projections are split between the
    processes. ``on_batch(number)`` is called after each scanned batch, ``on_unit(layer,
    channel, mode)`` after each unit's strips are written. ``featurevis`` (True, or a
    FeaturevisSettings or its dict: steps, size, seed, objective, batch) adds each unit's feature
    visualization to its page and its layer's grid, batch by batch and resumable
    (deconvnet.tasks.microscope.featurevis); a site's pictures stay on later builds without it.
    See deconvnet.tasks.microscope.

    >>> microscope("photos/", "site/", layers=["conv4_3"], modes=["deconvnet", "guided"])  # doctest: +SKIP
    >>> microscope("photos/", "site/", layers=["conv4_3"], featurevis={"steps": 128})    # doctest: +SKIP
    """
    check_integer(k, "k", minimum=1)
    channel_numbers(channels)  # its type, before the model loads
    optimize = pictures.as_settings(featurevis)
    options = RunOptions(device=device, batch_size=batch_size, workers=workers, limit=limit)
    modes = list(dict.fromkeys([modes] if isinstance(modes, str) else modes))
    if not modes:
        raise DeconvError("expected at least one mode (deconvnet, guided or backprop), received none")
    for mode in modes:
        check_mode(mode)
    job = Job(images, site_dir, options, progress=progress)
    names = job.images.names
    labelled = read_labels(names, labels, from_folders=job.images.from_folder)
    loaded = job.model(model, weights)
    out, group = job.out, job.group
    # Locked before the clean-up below, which would delete another build's temporary files.
    with job.running():
        group = job.group
        dn = Deconvnet(loaded.model)
        try:
            dn.follow_size(loaded.transform.input_size)
            requested = default_layers(dn) if layers == "all" else [dn.layer(n).name for n in
                                                                    ([layers] if isinstance(layers, str) else layers)]
            if not requested:
                raise DeconvError("expected at least one layer, received none "
                                  "(or the model has no conv or linear layer)")
            settings = job.settings(loaded, k=k, labels=_digest(json.dumps(labelled, sort_keys=True)))
            settings = json.loads(json.dumps(settings))  # as it reads back from site.json (tuples become lists)
            data = out / DATA
            manifest, error = {}, None
            if group.leader:
                try:
                    manifest = _open_site(out, settings, restart)
                except DeconvError as problem:
                    error = problem
            group.raise_if_any(error)
            manifest = group.broadcast(manifest)
            order = [layer.name for layer in dn.graph.layers]
            site_layers = sorted(set(manifest.get("layers", [])) | set(requested), key=order.index)
            site_modes = list(dict.fromkeys([*manifest.get("modes", []), *modes]))
            folders = folder_names([dn.layer(n).alias or n for n in site_layers])
            folder_of = {n: folders[dn.layer(n).alias or n] for n in site_layers}
            probe = dn.activations(torch.zeros(0, 3, *loaded.transform.input_size, device=job.device), site_layers)
            widths = {n: probe[n].shape[-1] if probe[n].dim() == 4 else None for n in site_layers}
            tables, skipped_before = _read_tables(data, site_layers, folder_of) if group.leader else ({}, [])
            tables, skipped_before = group.broadcast((tables, skipped_before))
            had = {n: [int(c) for c in chosen] for n, chosen in manifest.get("channels", {}).items()}
            site_channels = {n: sorted({*had.get(n, []), *(tables[n].channels if n in tables else []),
                                        *(_channels_of(channels, n, probe[n].shape[1], loaded)
                                          if n in requested else [])})
                             for n in site_layers}
            missing = {n: [c for c in site_channels[n] if n not in tables or c not in tables[n].channels]
                       for n in site_layers}
            missing = {n: chosen for n, chosen in missing.items() if chosen}
            if group.leader:
                data.mkdir(exist_ok=True)
                _remove_temporaries(out, [data, *(out / name for name in manifest.get("folders", []))])
                for n in missing:  # the layer's sprites no longer show all its units: they mark it undone
                    for mode in site_modes:
                        thumbnails.sprite_path(out / folder_of[n], mode).unlink(missing_ok=True)
                write_json_atomic(data / MANIFEST, _manifest(settings, site_layers, site_modes, folder_of,
                                                             site_channels))
            group.barrier()
            summary = MicroscopeSummary(out, site_layers, site_modes, 0, list(missing))
            skipped = skipped_before
            if missing:
                scan = job.scan(dn, loaded.transform, missing,
                                lambda count: {"top": TopK.empty(count, k), "histograms": Histograms.empty(count)},
                                {**settings, "layers": missing}, checkpoint=data / CHECKPOINT, record=data / RECORD,
                                replaceable=("layers",), on_batch=on_batch)
                skipped = scan.skipped
                for n, chosen in missing.items():
                    found = _layer_results(n, chosen, scan.kept[n], widths[n], names).labelled(labelled)
                    tables[n] = _combined(tables.get(n), found)
                if group.leader:
                    for n in missing:
                        write_json_atomic(data / f"{folder_of[n]}.json", _data_file(tables[n], skipped))
                    scan.record.discard()  # the data files now hold the scan
                group.barrier()
            todo = [(n, mode) for n in site_layers for mode in site_modes
                    if not thumbnails.sprite_path(out / folder_of[n], mode).exists()]
            todo = group.broadcast(todo)  # decided once: rank 0 writes the sprites meanwhile
            # every layer's units at once: an image's forward pass serves all of them
            summary.projected += thumbnails.render_units(
                dn, loaded.transform, job.images.root, [(n, out / folder_of[n], tables[n]) for n in
                                                        dict.fromkeys(n for n, _ in todo)],
                site_modes, job.device, progress, group=group, on_unit=on_unit)
            if group.leader:
                for n, mode in todo:
                    active = {c for c, entries in tables[n].channels.items() if entries}
                    thumbnails.write_sprites(out / folder_of[n], list(tables[n].channels), active, mode)
            group.barrier()
            if optimize is not None:
                summary.optimized = pictures.build(
                    loaded, data, {n: (out / folder_of[n], list(tables[n].channels)) for n in site_layers},
                    optimize, str(job.device), progress, group=group)
            images_scored = len(names) - len(skipped)
            if group.leader:
                caption, optimized = pictures.shown(data)
                write_json_atomic(data / MANIFEST, {**_manifest(settings, site_layers, site_modes, folder_of,
                                                                site_channels), "skipped": skipped})
                write_json_atomic(data / RESULTS, _results(loaded, settings, site_modes, images_scored,
                                                           {n: tables[n] for n in site_layers}, labelled))
                info = [_layer_info(dn, n, folder_of[n], probe[n], tables[n], optimized.get(n, {}))
                        for n in site_layers]
                site.write_site(out, model=loaded.name, identity=settings["weights"], transform=settings["transform"],
                                images=images_scored, images_root=str(job.images.root), k=k, modes=site_modes,
                                layers=info, labelled=bool(labelled), featurevis=caption)
            group.barrier()
            summary.images = images_scored
            summary.skipped = [(str(job.images.paths[i]), reason) for i, reason in skipped] + job.images.others
            return summary
        finally:
            dn.release()


def _manifest(settings: dict, layers: list[str], modes: list[str], folder_of: dict[str, str],
              channels: dict[str, list[int]]) -> dict:
    return {"format": SITE_FORMAT, "settings": settings, "layers": layers, "modes": modes,
            "folders": [folder_of[n] for n in layers], "channels": {n: channels[n] for n in layers}}


def _read_tables(data: Path, layers: list[str], folder_of: dict[str, str]) -> tuple[dict[str, LayerResults], list]:
    """The layers' results as the data files of an earlier build hold them (the site's own record)."""
    tables, skipped = {}, []
    for n in layers:
        path = data / f"{folder_of[n]}.json"
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
            tables[n] = LayerResults.from_json(n, stored["channels"], stored["histograms"])
            skipped = [(int(index), str(reason)) for index, reason in stored["skipped"]]
    return tables, skipped


def _layer_results(layer: str, channels: list[int], kept: dict, width: int | None, names: list[str]) -> LayerResults:
    top, histograms = kept["top"], kept["histograms"]
    return LayerResults(layer, top.entries(channels, width, names),
                        {channel: histograms.entry(row) for row, channel in enumerate(channels)})


def _combined(before: LayerResults | None, found: LayerResults) -> LayerResults:
    """An earlier build's channels of a layer with the ones scanned now, in channel order."""
    if before is None:
        return found
    channels = {**before.channels, **found.channels}
    histograms = {**before.histograms, **found.histograms}
    return LayerResults(found.layer, dict(sorted(channels.items())), dict(sorted(histograms.items())))


def _data_file(table: LayerResults, skipped: list[tuple[int, str]]) -> dict:
    return {"layer": table.layer, "channels": table.to_json(label=True),
            "histograms": {str(c): h for c, h in table.histograms.items()},
            "skipped": [list(item) for item in sorted(skipped)]}


_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # fileio's temporary names


def _remove_temporaries(out: Path, folders: list[Path]) -> None:
    """Delete the temporary files a killed build left while writing its files (never anything else)."""
    for folder in [out, *folders, *(f / "img" for f in folders)]:
        if folder.is_dir():
            for path in folder.iterdir():
                if _TEMPORARY.match(path.name) and path.is_file():
                    path.unlink(missing_ok=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _open_site(out: Path, settings: dict, restart: bool) -> dict:
    """The existing site's manifest ({} for a new site); refuses one built with other settings."""
    path = out / DATA / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise DeconvError(f"cannot read {path} ({error}); re-run with --restart to rebuild the site") from error
    # A site of format 1 kept "channels" (the first n of each layer) among its settings; now each layer
    # lists its channels, and more can be added.
    before = {key: value for key, value in manifest.get("settings", {}).items()
              if not (key == "channels" and manifest.get("format", 1) == 1)}
    if before == settings and not restart:
        return manifest
    if not restart:
        differ = [key for key in settings if before.get(key) != settings[key]]
        raise DeconvError(f"{out} holds a site built with other settings (different {', '.join(differ)}); "
                          "choose another folder, or re-run with --restart to rebuild it")
    for name in manifest.get("folders", []):  # only what a build wrote is removed
        if name and "/" not in name and not name.startswith("."):
            shutil.rmtree(out / name, ignore_errors=True)
    for name in site.SHARED_FILES:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / DATA, ignore_errors=True)
    return {}


def _layer_info(dn: Deconvnet, name: str, folder: str, probe: torch.Tensor, table: LayerResults,
                optimized: dict[int, float]) -> site.LayerInfo:
    layer = dn.layer(name)
    field = dn.receptive_field(name)
    units = []
    for channel, entries in table.channels.items():
        peak = entries[0].value if entries else None
        units.append(site.UnitInfo(channel, entries, table.histograms.get(channel), peak,
                                   peak is None or peak <= 0, selectivity([e.label for e in entries]),
                                   optimized.get(channel)))
    return site.LayerInfo(name=name, alias=layer.alias, folder=folder, kind=layer.kind,
                          shape="x".join(map(str, probe.shape[1:])),
                          field="whole input" if field.size is None else f"{field.size[0]}x{field.size[1]}",
                          units=units)


def _results(loaded: LoadedModel, settings: dict, modes: list[str], images: int, tables: dict[str, LayerResults],
             labelled: dict) -> dict:
    """The top9.json format, extended: "modes", per-entry "label", per-layer "histograms" and "labels"."""
    return {"model": loaded.name, "weights_sha256": loaded.weights_sha256, "mode": modes[0], "modes": modes,
            "transform": settings["transform"], "images": images, "k": settings["k"],
            "layers": {n: t.to_json(label=True) for n, t in tables.items()},
            "histograms": {n: {str(c): h for c, h in t.histograms.items()} for n, t in tables.items()},
            "labels": labelled}
