"""Feature visualization speed: ours (one batch for all channels) vs torch-lucent (one render_vis call per channel).

    python scripts/featurevis_bench.py [--steps 256] [--channels 16] [--size 128] [--device cpu]

Side by side in one process: the same channels of vgg16-hed's conv4_3, the same size and number of steps,
the same objective (the channel's mean), lucent's defaults (Fourier + decorrelated colour, its standard
transforms, Adam 0.05) with the model's own normalisation in front of the model. Each side's final image
is scored by the same independent computation (featurevis_common.channel_means). Timings are ratios
against each other; the CPU is named in the output. lucent lives in its own venv (docs/performance.md);
where it cannot be imported the script says so and times ours alone.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from featurevis_common import Normalised, channel_means, import_lucent, lucent_render, plain_features

import deconvnet
from machine import describe  # scripts/machine.py

LAYER_CHANNELS = 512  # conv4_3's width: a whole layer is 512 / batch batches


def timed(function):
    start = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="conv4_3", choices=["conv3_3", "conv4_3", "conv5_3"])
    parser.add_argument("--channels", type=int, default=16, help="channels 0..N-1")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lucent-input-size", type=int, default=None,
                        help="lucent's fixed_image_size (default: lucent's own, 224 for images below 224 px)")
    parser.add_argument("--no-lucent", action="store_true", help="time ours alone")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    channels = list(range(args.channels))
    loaded = deconvnet.load("vgg16-hed")
    loaded.model.to(args.device)
    wrapped = Normalised(plain_features(loaded), loaded.transform).to(args.device)
    lucent, reason = (None, "lucent: skipped (--no-lucent)") if args.no_lucent else import_lucent()
    print(f"# {describe()}; device {args.device}")
    print(f"# {len(channels)} channels of vgg16-hed {args.layer}, {args.size} px, {args.steps} steps")
    if lucent is None:
        print(f"# {reason}")

    fv, ours_seconds = timed(lambda: deconvnet.feature_visualization(
        loaded, args.layer, channels, size=args.size, steps=args.steps, device=args.device))
    ours = channel_means(wrapped, fv.rgb, args.layer, channels)
    rows = [("ours, one batch", ours_seconds)]
    theirs = None
    if lucent is not None:
        images, lucent_seconds = timed(lambda: torch.cat([
            lucent_render(lucent, wrapped, args.layer, c, args.size, args.steps, args.device, args.lucent_input_size)
            for c in channels]))
        theirs = channel_means(wrapped, images, args.layer, channels)
        rows.append((f"lucent, {len(channels)} render_vis calls", lucent_seconds))

    print("| run | seconds | s/step | s/channel/step | whole layer (512 ch), s/channel* |")
    print("|---|---|---|---|---|")
    for name, seconds in rows:
        per_channel = seconds / len(channels)
        print(f"| {name} | {seconds:.1f} | {seconds / args.steps:.2f} | {per_channel / args.steps:.3f} | "
              f"{per_channel * 256 / args.steps:.1f} |")
    print(f"*extrapolated: {LAYER_CHANNELS // len(channels)} batches of {len(channels)} like this one, "
          f"at 256 steps (seconds x 256 / {args.steps} / {len(channels)})")
    if theirs is not None:
        print(f"speed-up (lucent seconds / ours): {rows[1][1] / ours_seconds:.2f}x (goal >= 3x on CPU)")
    print("| channel | ours: channel mean | lucent: channel mean |")
    print("|---|---|---|")
    for i, channel in enumerate(channels):
        other = f"{theirs[i]:.1f}" if theirs is not None else "-"
        print(f"| {channel} | {ours[i]:.1f} | {other} |")
    summary = f"median: ours {ours.median():.1f}"
    if theirs is not None:
        summary += f", lucent {theirs.median():.1f}; ours higher on {int((ours > theirs).sum())}/{len(channels)}"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
