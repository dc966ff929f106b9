"""Benchmark `deconv microscope` against a loop of Captum NeuronDeconvolution calls.

    pip install -e ".[bench]"
    python scripts/bench_microscope.py --count 32 --channels 4 --captum-units 1

The full task (vgg16-hed, every convolution layer, deconvnet mode, 1000 photos, k = 9:
4224 units, 38016 projections) takes hours either way, so this measures a part of it and
extrapolates, saying which is which:

- measured: a microscope build over the first ``--count`` photos with the first
  ``--channels`` channels of every layer, timed by stage: the scan, the projections' forward
  passes (one per image, shared by all of its units, every layer), their backward passes per
  layer (each over its unit's cone), the strips, sprites and pages. Then, per layer,
  ``--captum-units`` units timed back to back: Captum's 9 NeuronDeconvolution calls for the
  unit's entries, the same 9 projections scheduled by channel (one call, each entry with its
  own forward pass over its cone: the previous scheduling) and today's engine; and the
  forward pass per image that Captum's loop needs to find each unit's top 9.
- extrapolated: the scan and the forward passes scale with the number of images (every photo
  is in some unit's top 9 of the full task); backward passes, strips and pages with the number
  of units (each unit projects k entries, whatever the number of images); Captum with its
  per-unit time times the units, plus one forward pass per image.

Writes bench_microscope.json and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import deconvnet
from deconvnet.dataset import runner
from deconvnet.dataset.images import open_image
from deconvnet.engine import Deconvnet
from deconvnet.engine.recorder import Recorder
from deconvnet.tasks.common import project_channel
from deconvnet.tasks.microscope import build as build_module
from deconvnet.tasks.microscope import default_layers, microscope
from machine import machine  # scripts/machine.py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BASE_COMMIT, TodaysEngine  # noqa: E402  # today's engine, imported side by side

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-samples"
FULL_IMAGES, K = 1000, 9


def _synchronize() -> None:
    """Wait for a GPU's queued kernels, so that a timing holds them (nothing on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(module, name: str, record: list) -> None:
    """Wrap module.name so each call appends (seconds, args) to record."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _synchronize()
            record.append((time.perf_counter() - start, args, kwargs))
    setattr(module, name, wrapper)


def build_site(photos: Path, site: Path, count: int, channels: int, batch_size: int, workers: int,
               device: str) -> dict:
    records: dict[str, list] = {"scan": [], "render_units": [], "write_sprites": [], "write_site": [],
                                "forward": [], "backward": []}
    _timed(runner.Job, "scan", records["scan"])  # the dataset runner's pass, as the build calls it
    _timed(build_module.thumbnails, "render_units", records["render_units"])
    _timed(build_module.thumbnails, "write_sprites", records["write_sprites"])
    _timed(build_module.site, "write_site", records["write_site"])
    _timed(Recorder, "record", records["forward"])  # the projections' forward passes (one per image)
    _timed(Deconvnet, "_backward_units", records["backward"])  # args: self, x, record, target, units, ...
    start = time.perf_counter()
    summary = microscope(photos, site, layers="all", modes=["deconvnet"], k=K, channels=channels, limit=count,
                         batch_size=batch_size, workers=workers, device=device, progress=False)
    total = time.perf_counter() - start
    peak = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())  # Linux: the peak RSS so far
    forwards = [seconds for seconds, args, _ in records["forward"] if args[1].shape[0] > 0]
    per_layer: dict[str, dict] = {}
    for seconds, args, _ in records["backward"]:
        layer = per_layer.setdefault(args[3].name, {"entries": 0, "seconds": 0.0})
        layer["entries"] += len(args[4])
        layer["seconds"] += seconds
    projecting = sum(forwards) + sum(v["seconds"] for v in per_layer.values())
    rendering = sum(r[0] for r in records["render_units"]) - projecting
    for layer in per_layer.values():
        layer["units"] = layer["entries"] / K
        layer["backward_per_unit_s"] = layer["seconds"] / layer["units"]
    units = sum(v["units"] for v in per_layer.values())
    return {"total_s": total, "images": summary.images, "scan_s": sum(r[0] for r in records["scan"]),
            "forward_passes": len(forwards), "forward_per_image_s": sum(forwards) / max(len(forwards), 1),
            "backward": per_layer, "units": units, "strips_per_unit_s": rendering / max(units, 1),
            "sprites_s": sum(r[0] for r in records["write_sprites"]),
            "pages_s": sum(r[0] for r in records["write_site"]),
            "peak_rss_mb": int(peak.group(1)) / 1024 if peak else None}


def interleaved(site: Path, photos: Path, per_layer: int, device: torch.device, today) -> dict:
    """Per layer, for ``per_layer`` units of the build: our projection of the unit's k entries (as the
    build does it, one batch) and the k Captum NeuronDeconvolution calls for the same entries (full
    224x224 image each), timed back to back so that both see the same load on a shared machine."""
    from captum.attr import NeuronDeconvolution

    loaded = deconvnet.models.load("vgg16-hed")
    loaded.model.to(device)
    model = copy.deepcopy(loaded.model)
    for module in model.modules():  # Captum hooks ReLU modules and needs them out of place
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    results = json.loads((site / "data" / "top9.json").read_text())
    ours, todays, captum, agreement = {}, {}, {}, {}
    dn, base = Deconvnet(loaded.model), today.deconvnet(loaded.model)
    for layer, table in results["layers"].items():
        # Active units first: a dead unit's map cannot be compared (its seed is not positive); the time is the same.
        units = sorted([(int(c), entries) for c, entries in table.items() if entries],
                       key=lambda unit: unit[1][0]["value"] <= 0)[:per_layer]
        ours_s, todays_s, captum_s = [], [], []
        for channel, entries in units:
            x = torch.stack([loaded.transform(open_image(photos / e["image"])) for e in entries]).to(device)
            positions = [(e["y"], e["x"]) for e in entries]
            start = time.perf_counter()
            project_channel(dn, loaded.transform, x, layer, channel, positions, "deconvnet")
            ours_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            project_channel(base, loaded.transform, x, layer, channel, positions, "deconvnet")
            todays_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            maps = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i, position in enumerate(positions):
                    maps.append(NeuronDeconvolution(model, model.get_submodule(layer)).attribute(
                        x[i:i + 1], neuron_selector=(channel, *position)))
            _synchronize()
            captum_s.append(time.perf_counter() - start)
            if entries[0]["value"] > 0:
                mine = dn.project_units(x[:1], layer, [(0, channel, positions[0])]).maps
                scale = float(mine.abs().max()) or 1.0
                agreement[layer] = max(agreement.get(layer, 0.0),
                                       float((mine - maps[0] * entries[0]["value"]).abs().max()) / scale)
        ours[layer], captum[layer] = statistics.median(ours_s), statistics.median(captum_s)
        todays[layer] = statistics.median(todays_s)
    x = torch.stack([loaded.transform(open_image(p)) for p in sorted(photos.glob("*.jpg"))[:8]]).to(device)
    with torch.no_grad():
        model(x)  # warm-up
        start = time.perf_counter()
        model(x)
        _synchronize()
        forward = (time.perf_counter() - start) / len(x)
    dn.release()
    base.release()
    return {"per_channel_per_unit_s": ours, "todays_engine_per_unit_s": todays, "captum_per_unit_s": captum,
            "forward_per_image_s": forward,
            "largest_relative_difference": agreement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--count", type=int, default=32, help="photos scanned (default 32)")
    parser.add_argument("--channels", type=int, default=8, help="first channels of every layer (default 8)")
    parser.add_argument("--captum-units", type=int, default=1,
                        help="units per layer timed in pairs, ours and Captum's k calls (default 1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="bench_microscope.json")
    parser.add_argument("--device", default="cpu",
                        help="where the build and the paired timings (Captum, per channel, today's engine) run")
    parser.add_argument("--baseline", default=BASE_COMMIT, help="the commit whose engine is today's")
    args = parser.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"no photos at {args.photos}; give a folder of photos with --photos")
    loaded = deconvnet.models.load("vgg16-hed")
    with Deconvnet(loaded.model) as dn:
        layers = default_layers(dn)
        shapes = dn.activations(torch.zeros(0, 3, 224, 224), layers)
    full_units = {layer: shapes[layer].shape[1] for layer in layers}
    with tempfile.TemporaryDirectory() as tmp:
        ours = build_site(args.photos, Path(tmp) / "site", args.count, args.channels, args.batch_size, args.workers,
                          args.device)
        print(json.dumps(ours, default=float), flush=True)
        paired = interleaved(Path(tmp) / "site", args.photos, args.captum_units, torch.device(args.device),
                             TodaysEngine(args.baseline))
    total_units = sum(full_units.values())
    scan_full = ours["scan_s"] / ours["images"] * FULL_IMAGES
    # Every photo sits in some unit's top 9 of the full task: one forward pass each.
    forwards_full = ours["forward_per_image_s"] * FULL_IMAGES
    backward_full = {layer: ours["backward"][layer]["backward_per_unit_s"] * full_units[layer] for layer in layers}
    strips_full = ours["strips_per_unit_s"] * total_units
    rest_full = (ours["sprites_s"] + ours["pages_s"]) / ours["units"] * total_units
    ours_full = scan_full + forwards_full + sum(backward_full.values()) + strips_full + rest_full
    # The previous scheduling, for the record: each channel's k entries as one call, each with its own forward.
    per_channel_full = (scan_full + strips_full + rest_full
                        + sum(paired["per_channel_per_unit_s"][layer] * full_units[layer] for layer in layers))
    captum_projections = {layer: paired["captum_per_unit_s"][layer] * full_units[layer] for layer in layers}
    captum_full = sum(captum_projections.values()) + FULL_IMAGES * paired["forward_per_image_s"]
    figures = {
        "machine": machine(),
        "settings": vars(args) | {"photos": str(args.photos)},
        "measured": {"microscope_build": ours, "paired_per_unit": paired},
        "extrapolated_to_1000_images_all_units": {
            "scan_s": scan_full, "forward_passes_s": forwards_full, "backward_passes_s": backward_full,
            "strips_s": strips_full, "sprites_and_pages_s": rest_full, "microscope_s": ours_full,
            "per_channel_scheduling_s": per_channel_full, "captum_projections_s": captum_projections,
            "captum_forward_passes_s": FULL_IMAGES * paired["forward_per_image_s"],
            "captum_loop_s": captum_full, "ratio": captum_full / ours_full,
            "per_channel_ratio": captum_full / per_channel_full},
    }
    Path(args.json).write_text(json.dumps(figures, indent=2, default=float) + "\n")
    print(f"measured: a build over {ours['images']} images, {args.channels} channels x {len(layers)} layers = "
          f"{ours['units']:.0f} units: {ours['total_s']:.1f}s (scan {ours['scan_s']:.1f}s, "
          f"{ours['forward_passes']} forward passes {ours['forward_per_image_s'] * ours['forward_passes']:.1f}s, "
          f"backward passes {sum(v['seconds'] for v in ours['backward'].values()):.1f}s, strips "
          f"{ours['strips_per_unit_s'] * ours['units']:.1f}s, sprites {ours['sprites_s']:.1f}s, "
          f"pages {ours['pages_s']:.1f}s); peak memory {ours['peak_rss_mb'] or 0:.0f} MB")
    print(f"{'layer':12} {'units':>6} {'backward s/unit':>16} {'per channel':>12} {'today':>8} {'captum':>8} "
          f"{'ratio':>6} {'full ours s':>12} {'full captum s':>14}")
    for layer in layers:
        mine = ours["backward"][layer]["backward_per_unit_s"] + ours["strips_per_unit_s"]
        print(f"{layer:12} {full_units[layer]:>6} {ours['backward'][layer]['backward_per_unit_s']:>16.3f} "
              f"{paired['per_channel_per_unit_s'][layer]:>12.3f} {paired['todays_engine_per_unit_s'][layer]:>8.3f} "
              f"{paired['captum_per_unit_s'][layer]:>8.3f} {paired['captum_per_unit_s'][layer] / mine:>6.1f} "
              f"{backward_full[layer]:>12.0f} {captum_projections[layer]:>14.0f}")
    print(f"extrapolated to {FULL_IMAGES} images and all {total_units} units: microscope {ours_full / 60:.1f} min "
          f"(scan {scan_full / 60:.1f}, forward passes {forwards_full / 60:.1f}, backward passes "
          f"{sum(backward_full.values()) / 60:.1f}, strips {strips_full / 60:.1f}, sprites and pages "
          f"{rest_full / 60:.1f}); Captum loop {captum_full / 60:.1f} min "
          f"({FULL_IMAGES * paired['forward_per_image_s'] / 60:.1f} of it forward passes); "
          f"ratio {captum_full / ours_full:.2f}x (scheduled by channel instead: {captum_full / per_channel_full:.2f}x)")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
