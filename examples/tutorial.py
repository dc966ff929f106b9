# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # deconvnet in five minutes
#
# The Python API on the shipped photos (Zeiler & Fergus, *Visualizing and Understanding
# Convolutional Networks*, ECCV 2014). Open it as a notebook
# (`jupytext --to notebook examples/tutorial.py`; every picture displays inline), or run it
# as a script: `python examples/tutorial.py [FOLDER]` saves each picture into FOLDER
# (default: a new temporary folder). CI runs it end to end; it takes about a minute on 2 CPU cores.

# %%
import sys
import tempfile
from pathlib import Path

import PIL.Image
import torch

import deconvnet
from deconvnet.render.pictures import crop_with_padding, to_display
from deconvnet.tasks.top9.compute import top9
from deconvnet.tasks.visualize.compute import strongest_channels

torch.set_grad_enabled(False)
HERE = Path(globals().get("__file__", Path.cwd() / "tutorial.py")).resolve().parent  # a notebook runs in examples/
ASSETS = HERE.parent / "assets"
IN_NOTEBOOK = "ipykernel" in sys.modules
OUT = Path(sys.argv[1] if len(sys.argv) > 1 and not IN_NOTEBOOK else tempfile.mkdtemp(prefix="deconvnet-tutorial-"))
OUT.mkdir(parents=True, exist_ok=True)


def show(picture, name: str) -> None:
    """Display a PIL image or a figure inline in a notebook; as a script, save it to OUT/name.png."""
    if IN_NOTEBOOK:
        from IPython.display import display

        display(picture)
        return
    path = OUT / f"{name}.png"
    if isinstance(picture, PIL.Image.Image):
        picture.save(path)
    else:
        picture.savefig(path, dpi=100)
    print(f"saved {path}")


# %% [markdown]
# ## 1. Load the default model and a photo
#
# `vgg16-hed` ships with the package: VGG16 with HED edge-detection weights, no network needed.
# `load_model` returns the model in eval mode and the transform that matches its weights
# (here BGR, 0-255 minus the Caffe mean).

# %%
model, transform = deconvnet.load_model("vgg16-hed")
photo = PIL.Image.open(ASSETS / "cat.jpg")
x = transform(photo)[None]  # (1, 3, 224, 224)
dn = deconvnet.Deconvnet(model)  # reads the model, never changes it
print(x.shape)

# %% [markdown]
# ## 2. One unit, three rules
#
# `project_units` projects units given as (image index, channel, position); `None` picks the
# channel's strongest activation. The three modes differ only at the ReLUs: the deconvnet
# ignores the forward ReLU masks, guided backpropagation applies them and rectifies, the
# gradient applies them without rectifying. A `Projection` shows itself: `to_image()` gives a
# PIL image (zero is mid-grey), `show()` a figure with each map titled by its unit.

# %%
projections = {mode: dn.project_units(x, "conv5_3", [(0, 12, None)], mode=mode) for mode in deconvnet.MODES}
for mode, projection in projections.items():
    print(mode, projection.units[0])
    show(projection.to_image(transform=transform), f"1-conv5_3-channel12-{mode}")

# %% [markdown]
# `deconvnet.visualize` draws the same unit with its input, receptive field and patch, all three
# rules side by side (without `mode` it shows the deconvnet and guided). Without an output
# path it writes nothing; the result displays as its figure.

# %%
figure = deconvnet.visualize(ASSETS / "cat.jpg", layer="conv5_3", channel=12, mode=deconvnet.MODES,
                             model=deconvnet.load("vgg16-hed"))
show(figure.figure, "2-conv5_3-channel12-three-rules")

# %% [markdown]
# ## 3. Which channels fire most on this photo?
#
# Rank the layer's channels by their strongest activation: by hand from `activations`, or
# with `strongest_channels`, which also says where each channel peaks.

# %%
activation = dn.activations(x, ["conv4_3"])["conv4_3"]  # (1, 512, 28, 28)
peaks = activation[0].amax(dim=(1, 2))  # (512,)
print("by hand:", peaks.topk(4).indices.tolist())
strongest = strongest_channels(dn, x, "conv4_3", top=4)
for unit in strongest:
    print(f"channel {unit.channel}: {unit.value:.1f} at {unit.position}")

# %% [markdown]
# One forward pass serves all four: project them together, each at its own peak.

# %%
ranked = dn.project_units(x, "conv4_3", [(0, u.channel, u.position) for u in strongest], mode="guided")
show(ranked.show(transform=transform), "3-conv4_3-strongest-guided")

# %% [markdown]
# ## 4. Crop to the receptive field
#
# A unit's projection is zero outside its receptive field. `box` gives that field in input
# pixels (it may run past the border); `crop_with_padding` cuts the same window from the
# photo and from the projection, padding where it leaves the image.

# %%
unit = ranked.units[0]
box = dn.box("conv4_3", unit.position, (x.shape[-2], x.shape[-1]))
print(box)
patch = crop_with_padding(transform.to_uint8(x[0]), tuple(box))  # (h, w, 3) uint8
cropped = to_display(crop_with_padding(transform.as_rgb(ranked.maps[0]), tuple(box)), percentile=99.5)
show(PIL.Image.fromarray(patch), "4-patch")
show(PIL.Image.fromarray(cropped), "4-projection")

# %% [markdown]
# ## 5. A small top-9 over the shipped photos (the paper's Fig. 2)
#
# `top9` scans an image set (a folder or a list file) for each channel's strongest
# activations and renders them beside their patches. `assets/` holds three photos, so
# here it is a top-3 of four channels; on your own folder use `k=9`.

# %%
photos = OUT / "photos.txt"
photos.write_text("".join(f"{path}\n" for path in sorted(ASSETS.glob("*.jpg"))))
summary = top9(photos, OUT / "top9", layers=["conv4_3"], channels=range(4), k=3, mode="guided", workers=0)
print(f"scanned {summary.images} images; results in {summary.results_path}")
for channel in range(2):
    show(PIL.Image.open(OUT / "top9" / "conv4_3" / f"channel_{channel:04d}.png"), f"5-top9-channel{channel}")

# %%
dn.release()
print(f"done; pictures in {OUT}" if not IN_NOTEBOOK else "done")
