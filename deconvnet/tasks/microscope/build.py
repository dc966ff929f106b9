"""Build or extend a microscope site: scan the new layers, project the new units, write the pages.

The site's settings (model and weights, transform, image list, k, labels) are fixed when it
is first built; a later build with the same settings adds layers and modes, computing only
what is missing: layers without scan results are scanned (all of them in one pass), units
without strips are projected, and the pages are rewritten. Every step leaves complete
files, so an interrupted build resumes where it stopped and ends with the same site.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ...dataset import folderlock
from ...dataset.distributed import pick_device
from ...engine import Deconvnet
from ...engine.relu import check_mode
from ...engine.validate import check_integer
from ...errors import DeconvError
from ...fileio import check_writable_dir, write_json_atomic
from ...models import LoadedModel, resolve_model
from ..top9.compute import _check_output_folder, _list_images, _model_identity, _name, _on_device
from ..top9.sheets import folder_names
from . import scan as scanning
from . import site, thumbnails
from .labels import read_labels, selectivity

DATA = "data"
MANIFEST = "site.json"  # data/site.json: the settings, layers and modes of the site
RESULTS = "top9.json"  # data/top9.json: every layer's results in the top9.json format, extended
CHECKPOINT = ".scan-checkpoint.pt"


@dataclass
class MicroscopeSummary:
    """What a build did. ``skipped`` lists (path, reason) for files that could not be used."""

    site: Path
    layers: list[str]
    modes: list[str]
    images: int
    scanned: list[str] = field(default_factory=list)  # layers scanned by this build
    projected: int = 0  # unit strips computed by this build
    skipped: list[tuple[str, str]] = field(default_factory=list)


def default_layers(dn: Deconvnet) -> list[str]:
    """"all": every convolution and fully connected layer, in forward order."""
    return [layer.name for layer in dn.graph.layers if isinstance(layer.module, (nn.Conv2d, nn.Linear))]


def microscope(images, site_dir, *, layers: str | Sequence[str] = "all", modes: Sequence[str] = ("deconvnet",),
               k: int = 9, labels=None, model: str | LoadedModel = "vgg16-hed", weights=None,
               channels: int | None = None, batch_size: int = 8, workers: int = 2, limit: int | None = None,
               device: str = "cpu", restart: bool = False, progress: bool = True) -> MicroscopeSummary:
    """Build (or extend) a static site of every unit of ``layers`` over ``images`` in ``site_dir``.

    ``layers`` is "all" (every convolution and fully connected layer) or names/aliases;
    ``modes`` the projection rules; ``labels`` a TSV file (``file<TAB>label``), else the
    images' sub-folder names are their labels. ``channels`` keeps only each layer's first
    channels (for trials and benchmarks). See the module docstring of deconvnet.tasks.microscope.

    >>> microscope("photos/", "site/", layers=["conv4_3"], modes=["deconvnet", "guided"])  # doctest: +SKIP
    """
    for name, value, low in (("k", k, 1), ("batch_size", batch_size, 1), ("workers", workers, 0),
                             ("limit", 1 if limit is None else limit, 1), ("channels", channels or 1, 1)):
        check_integer(value, name, minimum=low)
    modes = list(dict.fromkeys([modes] if isinstance(modes, str) else modes))
    if not modes:
        raise DeconvError("expected at least one mode (deconvnet, guided or backprop), received none")
    for mode in modes:
        check_mode(mode)
    out = Path(site_dir)
    dev = pick_device(device)
    _check_output_folder(out)
    root, paths, others = _list_images(images, out, limit)
    names = [_name(p, root) for p in paths]
    labelled = read_labels(names, labels, from_folders=Path(images).is_dir())
    loaded = resolve_model(model, weights)
    loaded = _on_device(loaded, dev)
    loaded.model.to(dev)  # ours (loaded here, or the copy): moving it touches nothing of the caller's
    out.mkdir(parents=True, exist_ok=True)
    # Locked before the clean-up below, which would delete another build's temporary files.
    with folderlock.locked(out):
        dn = Deconvnet(loaded.model)
        try:
            requested = default_layers(dn) if layers == "all" else [dn.layer(n).name for n in
                                                                    ([layers] if isinstance(layers, str) else layers)]
            if not requested:
                raise DeconvError("expected at least one layer, received none "
                                  "(or the model has no conv or linear layer)")
            settings = {"model": loaded.name, "weights": _model_identity(loaded),
                        "transform": loaded.transform.describe(), "k": k, "channels": channels,
                        "number of images": len(names),
                        "image list": _digest("\n".join(names)),
                        "labels": _digest(json.dumps(labelled, sort_keys=True))}
            settings = json.loads(json.dumps(settings))  # as it reads back from site.json (tuples become lists)
            out.mkdir(parents=True, exist_ok=True)
            check_writable_dir(out)
            data = out / DATA
            manifest = _open_site(out, settings, restart)
            data.mkdir(exist_ok=True)
            _remove_temporaries(out, [data, *(out / name for name in manifest.get("folders", []))])
            order = [layer.name for layer in dn.graph.layers]
            site_layers = sorted(set(manifest.get("layers", [])) | set(requested), key=order.index)
            site_modes = list(dict.fromkeys([*manifest.get("modes", []), *modes]))
            folders = folder_names([dn.layer(n).alias or n for n in site_layers])
            folder_of = {n: folders[dn.layer(n).alias or n] for n in site_layers}
            write_json_atomic(data / MANIFEST, {"settings": settings, "layers": site_layers, "modes": site_modes,
                                                "folders": list(folder_of.values())})
            probe = dn.activations(torch.zeros(0, 3, *loaded.transform.input_size, device=dev), site_layers)
            counts = {n: probe[n].shape[1] if channels is None else min(channels, probe[n].shape[1])
                      for n in site_layers}
            widths = {n: probe[n].shape[-1] if probe[n].dim() == 4 else None for n in site_layers}

            missing = [n for n in site_layers if not (data / f"{folder_of[n]}.json").exists()]
            summary = MicroscopeSummary(out, site_layers, site_modes, 0, missing)
            _scan_missing(dn, loaded, dev, paths, names, labelled, missing, counts, widths, folder_of, settings,
                                    data, batch_size, workers, progress)
            tables = {n: json.loads((data / f"{folder_of[n]}.json").read_text(encoding="utf-8")) for n in site_layers}
            for n in site_layers:
                folder = out / folder_of[n]
                table = tables[n]["channels"]
                for mode in site_modes:
                    if thumbnails.sprite_path(folder, mode).exists():
                        continue
                    summary.projected += thumbnails.render_units(dn, loaded.transform, root, n, folder, table, [mode],
                                                                 dev, progress)
                    active = {int(c) for c, entries in table.items() if entries}
                    thumbnails.write_sprites(folder, [int(c) for c in table], active, mode)
            skipped = tables[site_layers[0]]["skipped"]  # every scan reads the same images
            images_scored = len(names) - len(skipped)
            write_json_atomic(data / MANIFEST, {"settings": settings, "layers": site_layers, "modes": site_modes,
                                                "folders": list(folder_of.values()), "skipped": skipped})
            write_json_atomic(data / RESULTS, _results(loaded, settings, site_modes, images_scored, tables, labelled))
            info = [_layer_info(dn, n, folder_of[n], probe[n], tables[n]) for n in site_layers]
            site.write_site(out, model=loaded.name, identity=settings["weights"], transform=settings["transform"],
                            images=images_scored, images_root=str(root), k=k, modes=site_modes, layers=info,
                            labelled=bool(labelled))
            summary.images = images_scored
            summary.skipped = [(str(paths[i]), reason) for i, reason in skipped] + others
            return summary
        finally:
            dn.release()


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
    if manifest.get("settings") == settings and not restart:
        return manifest
    if not restart:
        before = manifest.get("settings", {})
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


def _scan_missing(dn, loaded, dev, paths, names, labelled, missing, counts, widths, folder_of, settings, data,
                  batch_size, workers, progress) -> None:
    """Scan the layers without results and write data/<layer>.json for each."""
    if not missing:
        return
    checkpoint = data / CHECKPOINT
    fingerprint = scanning.fingerprint_of({**settings, "layers": missing})
    if checkpoint.exists() and scanning.ScanState.load(checkpoint).fingerprint != fingerprint:
        scanning.discard(checkpoint)  # left by a build of other layers: start this scan afresh
    results, skipped = scanning.scan(dn, loaded.transform, paths, {n: counts[n] for n in missing}, settings["k"],
                                     checkpoint, fingerprint, batch_size=batch_size, workers=workers, device=dev,
                                     progress=progress)
    for n in missing:
        table = results[n].top.entries(list(range(counts[n])), widths[n], names)
        for entries in table.values():
            for entry in entries:
                entry["label"] = labelled.get(entry["image"])
        histograms = {str(c): results[n].histograms.entry(c) for c in range(counts[n])}
        write_json_atomic(data / f"{folder_of[n]}.json", {"layer": n, "channels": table, "histograms": histograms,
                                                          "skipped": [list(item) for item in sorted(skipped)]})
    scanning.discard(checkpoint)


def _layer_info(dn: Deconvnet, name: str, folder: str, probe: torch.Tensor, table: dict) -> site.LayerInfo:
    layer = dn.layer(name)
    field = dn.receptive_field(name)
    units = []
    for channel, entries in table["channels"].items():
        peak = entries[0]["value"] if entries else None
        units.append(site.UnitInfo(int(channel), entries, table["histograms"].get(channel), peak,
                                   peak is None or peak <= 0, selectivity([e.get("label") for e in entries])))
    return site.LayerInfo(name=name, alias=layer.alias, folder=folder, kind=layer.kind,
                          shape="x".join(map(str, probe.shape[1:])),
                          field="whole input" if field.size is None else f"{field.size[0]}x{field.size[1]}",
                          units=units)


def _results(loaded: LoadedModel, settings: dict, modes: list[str], images: int, tables: dict, labelled: dict) -> dict:
    """The top9.json format, extended: "modes", per-entry "label", per-layer "histograms" and "labels"."""
    return {"model": loaded.name, "weights_sha256": loaded.weights_sha256, "mode": modes[0], "modes": modes,
            "transform": settings["transform"], "images": images, "k": settings["k"],
            "layers": {n: t["channels"] for n, t in tables.items()},
            "histograms": {n: t["histograms"] for n, t in tables.items()},
            "labels": labelled}
