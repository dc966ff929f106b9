"""Does the optimized image drive its channel beyond every photo? (issue 26's check of a working feature visualization)

    python scripts/featurevis_check.py [--channels 16] [--steps 256] [--size 128] [--photos 1000]
                                       [--cache fv-photo-maxima.npz] [--lucent]

For each of conv3_3, conv4_3 and conv5_3 of vgg16-hed: channels 0..N-1 optimized (channel-mean objective)
as one batch, each image's channel mean vs the channel's highest spatial mean over the photos of
../shared/data/imagenet-samples (each loaded by the project's image loading and the model's transform,
224 px). Both sides are measured by featurevis_common.channel_means' computation. The photo maxima of
every channel are cached (--cache, written atomically) so that a rerun skips the photos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from featurevis_common import LAYER_INDEX, Normalised, channel_means, import_lucent, lucent_render, plain_features

import deconvnet
from deconvnet.dataset.images import open_image
from deconvnet.dataset.imageset import expand
from deconvnet.fileio import atomic_path
from machine import describe  # scripts/machine.py

SAMPLES = Path(__file__).resolve().parents[2] / "shared/data/imagenet-samples"


@torch.no_grad()
def photo_maxima(features: torch.nn.Sequential, transform, paths: list[Path], batch: int = 8) -> dict[str, np.ndarray]:
    """Each layer's per-channel maximum, over ``paths``, of the channel's spatial mean: {layer: (C,)}."""
    maxima: dict[str, np.ndarray] = {}
    last = max(LAYER_INDEX.values())
    for start in range(0, len(paths), batch):
        x = torch.stack([transform(open_image(p)) for p in paths[start:start + batch]])
        for index, layer in enumerate(features[:last + 1]):
            x = layer(x)
            for name, wanted in LAYER_INDEX.items():
                if index == wanted:
                    means = x.mean(dim=(2, 3)).max(dim=0).values.numpy()
                    maxima[name] = means if name not in maxima else np.maximum(maxima[name], means)
    return maxima


def cached_maxima(cache: Path, features, transform, paths: list[Path]) -> dict[str, np.ndarray]:
    """The photo maxima from ``cache`` when it was made from the same photos, else computed and saved."""
    key = np.array([str(p.name) for p in paths])
    if cache.exists():
        stored = np.load(cache)
        if "photos" in stored and np.array_equal(stored["photos"], key):
            return {name: stored[name] for name in LAYER_INDEX}
    maxima = photo_maxima(features, transform, paths)
    with atomic_path(cache) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, photos=key, **maxima)
    return maxima


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16, help="channels 0..N-1 of each layer")
    parser.add_argument("--layers", default="conv3_3,conv4_3,conv5_3")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--photos", type=int, default=1000, help="the first N photos (sorted) of the sample")
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--cache", type=Path, default=Path("fv-photo-maxima.npz"))
    parser.add_argument("--lucent", action="store_true", help="also optimize each channel with torch-lucent")
    parser.add_argument("--maxima-only", action="store_true", help="compute (and cache) the photo maxima, then stop")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    loaded = deconvnet.load("vgg16-hed")
    features = plain_features(loaded)
    paths = expand(args.samples)[:args.photos]
    maxima = cached_maxima(args.cache, features, loaded.transform, paths)
    print(f"# {describe()}; device {args.device}")
    print(f"# vgg16-hed, channels 0..{args.channels - 1}, {args.size} px, {args.steps} steps, "
          f"maxima over {len(paths)} photos of {args.samples.name}")
    if args.maxima_only:
        return 0
    lucent, reason = import_lucent() if args.lucent else (None, "")
    if reason:
        print(f"# {reason}")
    wrapped = Normalised(features, loaded.transform).to(args.device)
    loaded.model.to(args.device)
    channels = list(range(args.channels))
    print("| layer | channel | best photo | ours | ours / photo | lucent |")
    print("|---|---|---|---|---|---|")
    above, total = 0, 0
    for layer in args.layers.split(","):
        fv = deconvnet.feature_visualization(loaded, layer, channels, size=args.size, steps=args.steps,
                                             device=args.device)
        ours = channel_means(wrapped, fv.rgb, layer, channels)
        theirs = None
        if lucent is not None:
            theirs = channel_means(wrapped, torch.cat([
                lucent_render(lucent, wrapped, layer, c, args.size, args.steps, args.device, None)
                for c in channels]), layer, channels)
        for i, channel in enumerate(channels):
            best = float(maxima[layer][channel])
            other = f"{theirs[i]:.1f}" if theirs is not None else "-"
            ratio = f"{ours[i] / best:.1f}" if best > 0 else "-"
            print(f"| {layer} | {channel} | {best:.1f} | {ours[i]:.1f} | {ratio} | {other} |")
            above += int(ours[i] > best)
            total += 1
    print(f"above the best photo: {above}/{total} ({above / total:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
