"""Benchmark `deconv microscope` against a loop of Captum NeuronDeconvolution calls.

    pip install -e ".[bench]"
    python scripts/bench_microscope.py --count 32 --channels 8 --captum-units 2

The full task (vgg16-hed, every convolution layer, deconvnet mode, 1000 photos, k = 9:
4224 units, 38016 projections) takes hours either way, so this measures a part of it and
extrapolates, saying which is which:

- measured: a microscope build over the first ``--count`` photos with the first
  ``--channels`` channels of every layer, timed by stage (scan, projections per layer, sprites,
  pages); and ``--captum-units`` Captum calls per layer on units of that build, plus the
  forward pass per image that finding each unit's top 9 costs Captum's loop.
- extrapolated: the scan scales with the number of images; projections and pages with the
  number of units (each unit projects k entries, whatever the number of images); Captum with
  9 calls per unit plus one forward pass per image.

Writes bench_microscope.json and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

import deconvnet
from deconvnet.engine import Deconvnet
from deconvnet.images import open_image
from deconvnet.microscope import build as build_module
from deconvnet.microscope import default_layers, microscope

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-samples"
FULL_IMAGES, K = 1000, 9


def _timed(module, name: str, record: list) -> None:
    """Wrap module.name so each call appends (seconds, args) to record."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            record.append((time.perf_counter() - start, args, kwargs))
    setattr(module, name, wrapper)


def build_site(photos: Path, site: Path, count: int, channels: int, batch_size: int, workers: int) -> dict:
    records: dict[str, list] = {"scan": [], "render_units": [], "write_sprites": [], "write_site": []}
    _timed(build_module.scanning, "scan", records["scan"])
    _timed(build_module.thumbnails, "render_units", records["render_units"])
    _timed(build_module.thumbnails, "write_sprites", records["write_sprites"])
    _timed(build_module.site, "write_site", records["write_site"])
    start = time.perf_counter()
    summary = microscope(photos, site, layers="all", modes=["deconvnet"], k=K, channels=channels, limit=count,
                         batch_size=batch_size, workers=workers, progress=False)
    total = time.perf_counter() - start
    per_layer = {}
    for seconds, args, _ in records["render_units"]:
        layer, table = args[3], args[5]
        units = sum(1 for entries in table.values() if entries)
        per_layer[layer] = {"units": units, "seconds": round(seconds, 3), "per_unit_s": seconds / max(units, 1)}
    return {"total_s": total, "images": summary.images, "scan_s": sum(r[0] for r in records["scan"]),
            "sprites_s": sum(r[0] for r in records["write_sprites"]),
            "pages_s": sum(r[0] for r in records["write_site"]),
            "projections": per_layer, "units": sum(v["units"] for v in per_layer.values())}


def captum_calls(site: Path, photos: Path, per_layer: int) -> dict:
    """Seconds per NeuronDeconvolution call at each layer (full 224x224 image), and per forward pass."""
    from captum.attr import NeuronDeconvolution

    loaded = deconvnet.models.load("vgg16-hed")
    model = copy.deepcopy(loaded.model)
    for module in model.modules():  # Captum hooks ReLU modules and needs them out of place
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    results = json.loads((site / "data" / "top9.json").read_text())
    timings, agreement = {}, {}
    dn = Deconvnet(loaded.model)
    for layer, table in results["layers"].items():
        best = [(int(c), entries[0]) for c, entries in table.items() if entries]
        # Active units first: a dead unit's map cannot be compared (its seed is not positive); the time is the same.
        units = sorted(best, key=lambda unit: unit[1]["value"] <= 0)[:per_layer]
        seconds = []
        for channel, entry in units:
            x = loaded.transform(open_image(photos / entry["image"]))[None]
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attribution = NeuronDeconvolution(model, model.get_submodule(layer)).attribute(
                    x, neuron_selector=(channel, entry["y"], entry["x"]))
            seconds.append(time.perf_counter() - start)
            if entry["value"] <= 0:
                continue
            ours = dn.project_units(x, layer, [(0, channel, (entry["y"], entry["x"]))]).maps
            scale = float(ours.abs().max()) or 1.0
            agreement[layer] = max(agreement.get(layer, 0.0),
                                   float((ours - attribution * entry["value"]).abs().max()) / scale)
        timings[layer] = statistics.median(seconds)
    x = torch.stack([loaded.transform(open_image(p)) for p in sorted(photos.glob("*.jpg"))[:8]])
    with torch.no_grad():
        model(x)  # warm-up
        start = time.perf_counter()
        model(x)
        forward = (time.perf_counter() - start) / len(x)
    dn.release()
    return {"per_call_s": timings, "forward_per_image_s": forward, "largest_relative_difference": agreement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--count", type=int, default=32, help="photos scanned (default 32)")
    parser.add_argument("--channels", type=int, default=8, help="first channels of every layer (default 8)")
    parser.add_argument("--captum-units", type=int, default=2, help="Captum calls timed per layer (default 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="bench_microscope.json")
    args = parser.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"no photos at {args.photos}; give a folder of photos with --photos")
    loaded = deconvnet.models.load("vgg16-hed")
    with Deconvnet(loaded.model) as dn:
        layers = default_layers(dn)
        shapes = dn.activations(torch.zeros(0, 3, 224, 224), layers)
    full_units = {layer: shapes[layer].shape[1] for layer in layers}
    with tempfile.TemporaryDirectory() as tmp:
        ours = build_site(args.photos, Path(tmp) / "site", args.count, args.channels, args.batch_size, args.workers)
        print(json.dumps(ours, default=float), flush=True)
        captum = captum_calls(Path(tmp) / "site", args.photos, args.captum_units)
    scan_full = ours["scan_s"] / ours["images"] * FULL_IMAGES
    projections_full = {layer: ours["projections"][layer]["per_unit_s"] * full_units[layer] for layer in layers}
    per_unit_rest = (ours["sprites_s"] + ours["pages_s"]) / ours["units"]
    rest_full = per_unit_rest * sum(full_units.values())
    ours_full = scan_full + sum(projections_full.values()) + rest_full
    captum_full = (sum(K * full_units[layer] * captum["per_call_s"][layer] for layer in layers)
                   + FULL_IMAGES * captum["forward_per_image_s"])
    captum_subset = (sum(K * ours["projections"][layer]["units"] * captum["per_call_s"][layer] for layer in layers)
                     + ours["images"] * captum["forward_per_image_s"])
    figures = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average": os.getloadavg()},
        "measured": {"microscope": ours, "captum": captum,
                     "captum_loop_for_the_same_subset_s": captum_subset,
                     "ratio_on_the_subset": captum_subset / ours["total_s"]},
        "extrapolated_to_1000_images_all_units": {
            "scan_s": scan_full, "projections_s": projections_full, "sprites_and_pages_s": rest_full,
            "microscope_s": ours_full, "captum_loop_s": captum_full, "ratio": captum_full / ours_full},
    }
    Path(args.json).write_text(json.dumps(figures, indent=2, default=float) + "\n")
    print(f"measured: {ours['images']} images, {args.channels} channels x {len(layers)} layers = {ours['units']} units")
    print(f"  microscope {ours['total_s']:.1f}s (scan {ours['scan_s']:.1f}s, projections "
          f"{sum(v['seconds'] for v in ours['projections'].values()):.1f}s, sprites {ours['sprites_s']:.1f}s, "
          f"pages {ours['pages_s']:.1f}s); Captum loop for the same units {captum_subset:.1f}s: "
          f"{captum_subset / ours['total_s']:.2f}x")
    print(f"{'layer':12} {'units':>6} {'ours/unit s':>12} {'captum/call s':>14} {'full ours s':>12} "
          f"{'full captum s':>14}")
    for layer in layers:
        print(f"{layer:12} {full_units[layer]:>6} {ours['projections'][layer]['per_unit_s']:>12.3f} "
              f"{captum['per_call_s'][layer]:>14.3f} {projections_full[layer]:>12.0f} "
              f"{K * full_units[layer] * captum['per_call_s'][layer]:>14.0f}")
    print(f"extrapolated to {FULL_IMAGES} images and all {sum(full_units.values())} units: microscope "
          f"{ours_full / 60:.1f} min (scan {scan_full / 60:.1f}, "
          f"projections {sum(projections_full.values()) / 60:.1f}, "
          f"sprites and pages {rest_full / 60:.1f}); Captum loop {captum_full / 60:.1f} min; "
          f"ratio {captum_full / ours_full:.2f}x")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
