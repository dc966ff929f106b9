"""Make docs/img/featurevis.png: feature visualizations (Olah et al., Distill 2017) of vgg16-hed channels.

    python scripts/featurevis_figure.py [--layer conv4_3] [--channels 0-7] [--size 128] [--steps 128]

The committed figure was made with ``--channels 0-3 --size 96 --steps 64`` (a shared 2-core CPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deconvnet import feature_visualization, load
from deconvnet.cli.grammar import parse_channels
from deconvnet.fileio import save_image_atomic
from deconvnet.render.featurevis import featurevis_sheet

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "img" / "featurevis.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="conv4_3")
    parser.add_argument("--channels", default="0-7")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    loaded = load("vgg16-hed")
    channels = [int(c) for c in parse_channels(args.channels).items]
    fv = feature_visualization(loaded, args.layer, channels, size=args.size, steps=args.steps, progress=True)
    titles = [f"{args.layer} ch {c}" for c in fv.channels]
    save_image_atomic(args.output, featurevis_sheet(fv.pictures(), titles))
    print(f"wrote {args.output}; activations " + ", ".join(f"{v:.3g}" for v in fv.activations.tolist()))


if __name__ == "__main__":
    main()
