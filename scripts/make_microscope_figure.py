"""Regenerate the README's screenshot of a `deconv microscope` unit page from freely licensed photos.

    pip install -e ".[test]" scikit-image      # Playwright, and the CC0 / public-domain sample photos
    python scripts/make_microscope_figure.py   # needs Chromium (Debian: apt-get install chromium)

Builds a site for the first channels of vgg16-hed's conv5_3 over the three photos in assets/
and the CC0 and public-domain photos bundled with scikit-image (the list and licences are in
scripts/make_readme_figures.py and assets/README.md), labelled by photo, then opens one unit
page in headless Chromium and saves a screenshot to assets/readme-microscope-unit.png.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from deconvnet.tasks.microscope import microscope

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FREE_PHOTOS = ["brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "retina.jpg", "camera.png",
               "horse.png", "cell.png"]  # with assets/ cat (chelsea), coffee and astronaut: CC0 or public domain
LAYER, CHANNELS, UNIT, MODES = "conv5_3", 13, 12, ["deconvnet", "guided"]
OUTPUT = ASSETS / "readme-microscope-unit.png"


def collect_photos(folder: Path) -> Path:
    """The photos, each resized so the shorter side is 256, and a labels file naming each one."""
    import skimage.data

    sources = [ASSETS / name for name in ("cat.jpg", "coffee.jpg", "astronaut.jpg")]
    sources += [Path(skimage.data.__file__).parent / name for name in FREE_PHOTOS]
    lines = ["file\tlabel"]
    for source in sources:
        image = Image.open(source).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        image.save(folder / f"{source.stem}.jpg", quality=90)
        lines.append(f"{source.stem}.jpg\t{source.stem}")
    labels = folder.parent / "labels.tsv"
    labels.write_text("\n".join(lines) + "\n")
    return labels


def screenshot(page_path: Path, output: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, viewport={"width": 1060, "height": 760},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"])
        page = context.new_page()
        page.goto(page_path.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(output), full_page=True)
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, help="keep the site here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        labels = collect_photos(photos)
        site = args.site or Path(tmp) / "site"
        microscope(photos, site, layers=[LAYER], modes=MODES, labels=labels, channels=CHANNELS, workers=0)
        screenshot(site / LAYER / f"{UNIT}.html", OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
