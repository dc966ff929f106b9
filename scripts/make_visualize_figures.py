"""Regenerate the README's `deconv visualize` pictures in assets/ from the shipped cat photo.

    python scripts/make_visualize_figures.py

Each figure is made by the command the README prints beside it (run here through
deconvnet.cli.main, so the picture is the command's own output), with the shipped
vgg16-hed model; assets/cat.jpg is CC0 (see assets/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import PIL.Image

import deconvnet
from deconvnet.cli import main as deconv
from deconvnet.fileio import save_figure_atomic

ROOT = Path(__file__).resolve().parents[1]
CAT = "assets/cat.jpg"
# (figure, the README's command without "deconv" and "-o")
COMMANDS = [
    ("readme-cat-conv5_3.png", ["visualize", "--layer", "conv5_3", "--channel", "12", CAT]),
    ("readme-cat-conv4_3-top8.png", ["visualize", "--layer", "conv4_3", CAT]),
    ("readme-cat-conv4_3-channel440-rules.png",
     ["visualize", "--layer", "conv4_3", "--channel", "440", "--mode", "deconvnet,guided,backprop", CAT]),
]


def notebook_figure(path: Path) -> None:
    """The README's notebook example: three units of conv4_3, guided, as Projection.show() draws them."""
    model, transform = deconvnet.load_model("vgg16-hed")
    x = transform(PIL.Image.open(ROOT / CAT))[None]
    with deconvnet.Deconvnet(model) as dn:
        p = dn.project_units(x, "conv4_3", [(0, 440, None), (0, 205, None), (0, 125, None)], mode="guided")
    save_figure_atomic(path, p.show(transform=transform), dpi=100)


def main() -> None:
    os.chdir(ROOT)  # the commands name the photo as the README does
    for name, command in COMMANDS:
        status = deconv([*command, "-o", f"assets/{name}"])
        if status != 0:
            raise SystemExit(f"deconv {' '.join(command)} failed with status {status}")
    notebook_figure(ROOT / "assets" / "readme-notebook-conv4_3-guided.png")
    print("wrote the visualize figures to assets/")


if __name__ == "__main__":
    main()
