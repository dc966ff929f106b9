"""Regenerate the README's sanity-check figures (assets/readme-sanity-*.png) from free photos.

    pip install -e ".[analysis,lite0]"
    python scripts/make_sanity_figures.py

The photos are the three in assets/ (CC0 and public domain) and five CC0 or public-domain
samples bundled with scikit-image (documented in skimage/data/_fetchers.py). The check runs
EfficientNet-Lite0 on each photo's own top-1 class, all three modes, seed 0; it prints the
summary quoted in the README and writes the full numbers to assets/readme-sanity.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from deconvnet.tasks.sanity.files import sanity

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SKIMAGE_PHOTOS = ("camera", "horse", "hubble_deep_field", "retina", "brick")


def shrink(source: Path, destination: Path, scale: float = 0.6) -> None:
    """A smaller copy for the repository: scaled down and reduced to a 256-colour palette."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        small = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        small.quantize(256).save(destination, optimize=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = [ASSETS / name for name in ("cat.jpg", "coffee.jpg", "astronaut.jpg")]
        for name in SKIMAGE_PHOTOS:
            pixels = np.asarray(getattr(skimage.data, name)())
            if pixels.dtype == bool:
                pixels = pixels.astype(np.uint8) * 255
            path = folder / f"{name}.png"
            Image.fromarray(pixels).convert("RGB").save(path)
            photos.append(path)
        out = folder / "out"
        started = time.perf_counter()
        report = sanity(photos, out, layer="logits", channel="top1", model="efficientnet-lite0", seed=0)
        print(f"{len(photos)} photos in {time.perf_counter() - started:.0f} s")
        for name in ("randomization", "curves"):  # the selectivity numbers are a table in the README
            shrink(out / f"{name}.png", ASSETS / f"readme-sanity-lite0-{name}.png")
        numbers = json.loads((out / "sanity.json").read_text())
        numbers["images"] = [Path(path).name for path in numbers["images"]]  # not the temporary folder
        (ASSETS / "readme-sanity.json").write_text(json.dumps(numbers) + "\n")
    print("\n".join(report.result.summary()))


if __name__ == "__main__":
    main()
