"""Benchmark deconvnet against baselines measured in the same run, as ratios.

    pip install -e ".[bench]" && python scripts/bench.py [--quick] [--json bench.json]

1. scan: top9's pass over the images (no rendering) vs a plain inference_mode forward
   of the same model truncated at the same layer, same batch size and data. Goal >= 0.9.
2. one projection of a VGG16 relu5_3 unit at 224x224 at a known position vs Captum's
   NeuronDeconvolution on the same unit, vs one forward plus one backward pass of autograd,
   and vs today's engine (the base commit's package, imported side by side as
   ``deconvnet_base``; our own engine with ``cones=False`` when git is not at hand).
   Goal <= 0.45x Captum. Ours is timed warm (the geometry's trial made, as in any session that
   projects more than one unit), cold (every call makes its trial again) and at a first sighting
   (a fresh session: the geometry is new, so the unit reads the full forward, as a one-off
   projection would).
3. many projections: the 9 projections of each of 16 channels (conv3_3 and relu5_3) vs a
   loop of Captum NeuronDeconvolution calls giving the same 144 maps (checked equal), vs
   today's engine, and, as "shared", all 144 units in one ``project_units`` call over the
   images (one forward per image for all of its units, over the images that have units once
   their rows alone are tried against the whole batch). Goals >= 40x at conv3_3 and >= 2.5x
   at relu5_3. Ours is timed warm (after one pass that sighted every geometry and one that
   tried it, as in a top9 or microscope run past its first channels) and cold (a fresh session).
4. memory: peak RSS of a scan over 200 and 1000 images, and of projecting 64 channels at once.
5. faithful: how often a unit alone in its image runs forward over its cone (its geometry's
   trial showed the model's own summation order, engine/faithful.py) and how often it takes the
   full forward instead, and what the trials cost: the strongest unit of 4 channels of conv3_3,
   conv4_3 and relu5_3 of vgg16-hed in each of 100 photos, one call each, and the same on
   random-weight torchvision VGG16, AlexNet, VGG11-BN and ResNet-18 over 10 photos.

``--device cuda`` runs ours, today's engine and Captum on the GPU.

The model is the offline default vgg16-hed (the VGG16 architecture, so timings hold for
ImageNet VGG16). Images come from ../shared/data/imagenet-samples when present, else
synthetic photos-like noise. Each timing is the best of a few repeats.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import torch

import deconvnet
from deconvnet.dataset.images import open_image
from deconvnet.dataset.imageset import expand
from machine import describe, machine  # scripts/machine.py

SAMPLES = Path(__file__).resolve().parents[2] / "shared/data/imagenet-samples"
REPO = Path(__file__).resolve().parents[1]
BASE_COMMIT = "6f3830f"  # the engine before cone-restricted backward passes (issue 18)
GOALS = {"scan": (">=", 0.9), "one_projection_vs_captum": ("<=", 0.45),
         "many_conv3_3_speedup": (">=", 40.0), "many_relu5_3_speedup": (">=", 2.5)}
DEVICE = torch.device("cpu")


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(functions: dict, repeats: int) -> dict:
    """The best of ``repeats`` times of each function, run in turns so that all see the same load."""
    times: dict = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(best_time(function, 1))
    return {name: min(values) for name, values in times.items()}


class TodaysEngine:
    """The engine of ``commit`` (imported as ``deconvnet_base``), or ours with cones off without git."""

    def __init__(self, commit: str) -> None:
        self.options: dict = {}
        try:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "deconvnet"], check=True,
                                     capture_output=True).stdout
        except (OSError, subprocess.CalledProcessError):
            self.package, self.options, self.name = deconvnet, {"cones": False}, "this engine with cones=False"
            return
        root = Path(tempfile.mkdtemp(prefix="deconvnet_base_"))
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(root, filter="data")
        (root / "deconvnet").rename(root / "deconvnet_base")
        sys.path.insert(0, str(root))
        self.package, self.name = importlib.import_module("deconvnet_base"), f"the engine of commit {commit}"

    def deconvnet(self, model):
        return self.package.Deconvnet(model)


def image_paths(count: int, workdir: Path) -> list[Path]:
    """Real photos when the shared folder exists, else generated ones (repeating as needed)."""
    if SAMPLES.is_dir():
        paths = expand(SAMPLES)
    else:
        generator = torch.Generator().manual_seed(0)
        paths = []
        for i in range(min(count, 64)):
            from PIL import Image

            pixels = (torch.rand(256, 256, 3, generator=generator) * 255).to(torch.uint8).numpy()
            path = workdir / f"synthetic_{i:03d}.png"
            Image.fromarray(pixels).save(path)
            paths.append(path)
    return [paths[i % len(paths)] for i in range(count)]


def load_batch(transform, paths) -> torch.Tensor:
    return torch.stack([transform(open_image(p)) for p in paths]).to(DEVICE)


def captum_copy(model):
    """Captum hooks ReLU modules and needs them out of place; this copy does not change the results."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    return clone


def captum_projection(captum_model, layer_module, x, channel, position):
    from captum.attr import NeuronDeconvolution

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that it sets requires_grad and hooks ReLUs
        return NeuronDeconvolution(captum_model, layer_module).attribute(x, neuron_selector=(channel, *position))


def bench_one_projection(model, transform, paths, repeats: int, today: TodaysEngine) -> dict:
    x = load_batch(transform, paths[:1])
    captum_model = captum_copy(model)
    dn, base = deconvnet.Deconvnet(model), today.deconvnet(model)
    unit = dn.project_units(x, "relu5_3", [(0, 12, None)]).units[0]
    result = dn.project_units(x, "relu5_3", [(0, 12, unit.position)]).maps
    layer = captum_model.features[29]
    reference = captum_projection(captum_model, layer, x, 12, unit.position) * unit.value

    def autograd_pass():
        leaf = x.clone().requires_grad_(True)
        kept = {}
        handle = model.features[29].register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
        try:
            model.features[:30](leaf)
        finally:
            handle.remove()
        kept["a"][0, 12, unit.position[0], unit.position[1]].backward()

    # Cold and first-sighting calls reset their own engine's trials, so the warm one keeps its verdicts.
    dn_cold, dn_first = deconvnet.Deconvnet(model), deconvnet.Deconvnet(model)
    dn_cold.project_units(x, "relu5_3", [(0, 12, unit.position)])  # its first sighting: cold calls are trials

    def cold():
        dn_cold._trials.verdicts.clear()
        dn_cold._trials.choices.clear()
        return dn_cold.project_units(x, "relu5_3", [(0, 12, unit.position)])

    def first():
        dn_first._trials.sightings.clear()
        dn_first._trials.verdicts.clear()
        dn_first._trials.choices.clear()
        return dn_first.project_units(x, "relu5_3", [(0, 12, unit.position)])

    times = interleaved({
        "ours": lambda: dn.project_units(x, "relu5_3", [(0, 12, unit.position)]),
        "cold": cold,
        "first": first,
        "strongest": lambda: dn.project_units(x, "relu5_3", [(0, 12, None)]),
        "today": lambda: base.project_units(x, "relu5_3", [(0, 12, unit.position)], **today.options),
        "captum": lambda: captum_projection(captum_model, layer, x, 12, unit.position),
        "autograd": autograd_pass}, repeats)
    statistics = dn.cone_statistics
    for engine in (dn, dn_cold, dn_first, base):
        engine.release()
    ours, ours_strongest, todays, captum, autograd = (times[k] for k in ("ours", "strongest", "today", "captum",
                                                                          "autograd"))
    return {"ours_s": ours, "ours_strongest_s": ours_strongest, "todays_engine_s": todays, "captum_s": captum,
            "autograd_fwd_bwd_s": autograd, "one_projection_vs_captum": ours / captum,
            "cold_s": times["cold"], "cold_vs_captum": times["cold"] / captum,
            "first_sighting_s": times["first"], "first_sighting_vs_captum": times["first"] / captum,
            "cone_forward_served": statistics.cone_units > 0,
            "todays_engine_vs_captum": todays / captum, "vs_todays_engine": ours / todays,
            "vs_autograd": ours / autograd, "max_abs_difference": float((result - reference).abs().max())}


def top9_units(dn, x, layer, count, k=9):
    """The first ``count`` channels that are active on the images (a dead channel's seeds are
    negative, and the deconvnet's rectification then differs from a scaled Captum map), with
    each channel's k strongest images of x and their positions. The setup, not timed."""
    activation = dn.activations(x, [layer])[layer]  # (N, C, H, W)
    values, where = activation.flatten(2).max(dim=2)  # (N, C)
    channels = [c for c in range(activation.shape[1]) if values[:, c].topk(k).values.min() > 0][:count]
    values, where = values[:, channels], where[:, channels]
    best = values.topk(k, dim=0).indices  # (k, C)
    width = activation.shape[-1]
    units = {}
    for column, channel in enumerate(channels):
        images = best[:, column].tolist()
        units[channel] = [(i, divmod(int(where[i, column]), width)) for i in images]
    return units


def per_channel_calls(dn, x, layer, units, options) -> list:
    """As top9 projects: one call per channel over the batch of its 9 images."""
    maps = []
    for channel, chosen in units.items():
        batch = x[[i for i, _ in chosen]]
        units_of_batch = [(row, channel, pos) for row, (_, pos) in enumerate(chosen)]
        projection = dn.project_units(batch, layer, units_of_batch, **options)
        maps.append((projection.maps, [u.value for u in projection.units]))
    return maps


def one_call(dn, x, layer, units) -> list:
    """Every unit in one call over all the images: one forward per image serves all of its units."""
    requests = [(i, channel, pos) for channel, chosen in units.items() for i, pos in chosen]
    projection = dn.project_units(x, layer, requests)
    maps, row = [], 0
    for chosen in units.values():
        rows = slice(row, row + len(chosen))
        maps.append((projection.maps[rows], [u.value for u in projection.units[rows]]))
        row += len(chosen)
    return maps


def bench_many_projections(model, transform, paths, layer, module_index, channels, repeats: int,
                           today: TodaysEngine) -> dict:
    x = load_batch(transform, paths)
    captum_model = captum_copy(model)
    with deconvnet.Deconvnet(model) as dn, today.deconvnet(model) as base:
        units = top9_units(dn, x, layer, channels)
        assert len(units) == channels, f"only {len(units)} active channels at {layer}"
        # a fresh session: each geometry's first sighting reads the full forward, its second is tried
        cold_time = best_time(lambda: per_channel_calls(dn, x, layer, units, {}), 1)
        per_channel_calls(dn, x, layer, units, {})
        # the one call alike: its first sighting reads all of x, its second tries the images' rows alone
        shared_cold_time = best_time(lambda: one_call(dn, x, layer, units), 1)
        one_call(dn, x, layer, units)
        trials, row_trials = dn.cone_statistics.trials, dn.cone_statistics.row_trials
        failed_row_trials = dn.cone_statistics.failed_row_trials
        times = interleaved({"ours": lambda: per_channel_calls(dn, x, layer, units, {}),
                             "shared": lambda: one_call(dn, x, layer, units),
                             "today": lambda: per_channel_calls(base, x, layer, units, today.options)}, repeats)
        ours_time, shared_time, todays_time = times["ours"], times["shared"], times["today"]
        our_maps = per_channel_calls(dn, x, layer, units, {})
        shared_maps = one_call(dn, x, layer, units)
        side = dn.receptive_field(layer).size[0]
    module = captum_model.features[module_index]

    def captum():
        return [[captum_projection(captum_model, module, x[i:i + 1], channel, pos) for i, pos in chosen]
                for channel, chosen in units.items()]

    captum_time = best_time(captum, 1)  # slow: once
    captum_maps = captum()

    def difference(maps_and_values):
        return max(float((maps[row] - captum_maps[c][row][0] * values[row]).abs().max())
                   for c, (maps, values) in enumerate(maps_and_values) for row in range(len(values)))

    return {"ours_s": ours_time, "ours_cold_s": cold_time, "cold_speedup": captum_time / cold_time,
            "trials_in_the_first_two_passes": trials, "row_trials": row_trials,
            "failed_row_trials": failed_row_trials,
            "shared_s": shared_time, "shared_cold_s": shared_cold_time,
            "images_with_units": len({i for chosen in units.values() for i, _ in chosen}), "images": x.shape[0],
            "todays_engine_s": todays_time, "captum_s": captum_time,
            "maps": sum(len(v) for v in units.values()), "speedup": captum_time / min(ours_time, shared_time),
            "per_channel_speedup": captum_time / ours_time, "shared_speedup": captum_time / shared_time,
            "todays_engine_speedup": captum_time / todays_time,
            "max_abs_difference": max(difference(our_maps), difference(shared_maps)),
            "field_share_of_image": min(side, x.shape[-1]) ** 2 / x.shape[-1] ** 2}


def bench_faithful(model, transform, paths) -> dict:
    """How often the cone forward serves a unit alone in its image, and what its trials cost."""
    import torchvision

    def run(net, layers, images, channels=4) -> dict:
        found = {}
        with deconvnet.Deconvnet(net) as dn:
            for layer in layers:
                start, before = time.perf_counter(), dn.cone_statistics.trial_seconds
                for path in images:
                    x = load_batch(transform, [path])
                    activation = dn.activations(x, [layer])[layer][0]  # (C, H, W)
                    strongest = activation.flatten(1).amax(1).topk(channels).indices.tolist()
                    for channel in strongest:
                        y, x_ = divmod(int(activation[channel].argmax()), activation.shape[-1])
                        dn.project_units(x, layer, [(0, channel, (y, x_))])
                stats = dn.cone_statistics
                found[layer] = {"cone_units": stats.cone_units, "full_units": stats.full_units,
                                "trials": stats.trials, "failed_trials": stats.failed_trials,
                                "trial_share_of_time": round((stats.trial_seconds - before)
                                                             / (time.perf_counter() - start), 3)}
                stats.cone_units = stats.full_units = stats.trials = stats.failed_trials = 0
        return found

    figures = {"vgg16-hed": run(model, ["conv3_3", "conv4_3", "relu5_3"], paths[:100])}
    torch.manual_seed(0)
    for name, layers in {"vgg16": ["features.15", "features.29"], "alexnet": ["features.7", "features.11"],
                         "vgg11_bn": ["features.13", "features.27"],
                         "resnet18": ["layer2.1.relu:2", "layer4.1.relu:2"]}.items():
        net = torchvision.models.get_model(name, weights=None).eval().to(DEVICE)
        figures[f"{name} (random weights)"] = run(net, layers, paths[:10])
    return figures


# The child reads its own peak from /proc: ru_maxrss would include the parent's peak, since
# Linux keeps it across fork and exec.
MEMORY_SNIPPET = """
import re, sys, torch, deconvnet
from deconvnet.dataset.images import open_image
kind, argument = sys.argv[1], sys.argv[2]
if kind == "scan":
    from deconvnet.tasks.top9.compute import top9
    top9(argument, sys.argv[3], layers=["conv3_3"], channels=range(16), batch_size=16, workers=0,
         progress=False, render=False)
else:
    model, transform = deconvnet.load_model("vgg16-hed")
    x = transform(open_image(argument))[None]
    with deconvnet.Deconvnet(model) as dn:
        dn.project(x, "conv3_3", list(range(64)))
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def peak_rss_mb(*args: str) -> float:
    output = subprocess.run([sys.executable, "-c", MEMORY_SNIPPET, *args], check=True, capture_output=True,
                            text=True).stdout
    return int(output.strip().splitlines()[-1]) / 1024  # VmHWM is in KiB


def bench_memory(paths, workdir: Path, counts) -> dict:
    result = {}
    for count in counts:
        listing = workdir / f"images_{count}.txt"
        listing.write_text("\n".join(str(p.resolve()) for p in paths[:count]) + "\n")
        result[f"scan_{count}_images_mb"] = peak_rss_mb("scan", str(listing), str(workdir / f"out_{count}"))
    result["project_64_channels_mb"] = peak_rss_mb("project", str(paths[0]))
    return result


def bench_scan(paths, workdir: Path, batch_size: int, repeats: int) -> dict:
    from deconvnet.tasks.top9.compute import top9

    loaded = deconvnet.load("vgg16-hed")
    listing = workdir / "scan_images.txt"
    listing.write_text("\n".join(str(p.resolve()) for p in paths) + "\n")
    x_batches = [load_batch(loaded.transform, paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    truncated = loaded.model.features[:15]  # up to conv3_3: the plain baseline

    def plain():
        with torch.inference_mode():
            for x in x_batches:
                truncated(x)

    def ours():  # top9's scan over the same images, decoding them itself in 2 workers
        top9(listing, workdir / "scan_out", layers=["conv3_3"], channels="all", model=loaded,
             batch_size=batch_size, workers=2, restart=True, progress=False, render=False)

    baseline, scan = best_time(plain, repeats), best_time(ours, repeats)
    return {"images": len(paths), "batch_size": batch_size, "plain_forward_s": baseline, "top9_scan_s": scan,
            "scan": baseline / scan}


def verdict(figures: dict) -> dict:
    table = {}
    for key, (direction, goal) in GOALS.items():
        value = figures.get(key)
        if value is None:
            continue
        met = value >= goal if direction == ">=" else value <= goal
        table[key] = {"value": round(value, 3), "goal": f"{direction} {goal}", "met": met}
        if not met:
            table[key]["short_by"] = f"{abs(1 - value / goal):.0%}"
            detail = figures.get(key.removesuffix("_speedup"))
            share = detail.get("field_share_of_image") if isinstance(detail, dict) else None
            if share:
                table[key]["why"] = (f"a unit's receptive field covers {share:.0%} of the image, so the window "
                                     f"saves little, and every map still needs its own forward and backward pass")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer channels and images (a smoke run)")
    parser.add_argument("--json", default="bench.json", help="where to write the figures")
    parser.add_argument("--skip", nargs="*", default=[], choices=["scan", "one", "many", "memory", "faithful"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda: ours, today's engine and Captum run there")
    parser.add_argument("--channels", type=int, help="channels of the many-projections figure (16; 4 with --quick)")
    parser.add_argument("--baseline", default=BASE_COMMIT, help="the commit whose engine is today's")
    parser.add_argument("--threads", type=int, help="torch threads (1 gives steadier ratios on a loaded machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = torch.device(args.device)
    today = TodaysEngine(args.baseline)
    torch.manual_seed(0)
    repeats = 1 if args.quick else 3
    channels = args.channels or (4 if args.quick else 16)
    model, transform = deconvnet.load_model("vgg16-hed")
    model.to(DEVICE)
    print(describe(), flush=True)
    figures: dict = {"machine": {**machine(), "device": str(DEVICE)},
                     "todays_engine": today.name}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        paths = image_paths(1000, workdir)
        if "scan" not in args.skip:
            figures["scan_detail"] = bench_scan(paths[:64 if args.quick else 256], workdir, 32, repeats)
            figures["scan"] = figures["scan_detail"]["scan"]
            print("scan", figures["scan_detail"], flush=True)
        if "one" not in args.skip:
            figures["one_projection"] = bench_one_projection(model, transform, paths, repeats, today)
            figures["one_projection_vs_captum"] = figures["one_projection"]["one_projection_vs_captum"]
            print("one projection", figures["one_projection"], flush=True)
        if "many" not in args.skip:
            pool = paths[:32 if args.quick else 64]
            for layer, index in (("conv3_3", 14), ("relu5_3", 29)):
                detail = bench_many_projections(model, transform, pool, layer, index, channels, 1 if args.quick else 2,
                                                today)
                figures[f"many_{layer}"] = detail
                figures[f"many_{layer}_speedup"] = detail["speedup"]
                print("many", layer, detail, flush=True)
        if "faithful" not in args.skip:
            figures["faithful"] = bench_faithful(model, transform, paths[:20 if args.quick else 100])
            print("faithful", json.dumps(figures["faithful"], indent=1), flush=True)
        if "memory" not in args.skip:
            figures["memory"] = bench_memory(paths, workdir, (50, 100) if args.quick else (200, 1000))
            print("memory", figures["memory"], flush=True)
    figures["machine"]["load_average_at_end"] = os.getloadavg()
    figures["goals"] = verdict(figures)
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{'figure':32} {'value':>10} {'goal':>8}  met")
    for key, row in figures["goals"].items():
        print(f"{key:32} {row['value']:>10} {row['goal']:>8}  {'yes' if row['met'] else 'NO'}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
