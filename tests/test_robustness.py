"""Robustness: every bad input gets one clear line, nothing is written or lost, untrusted files stay harmless.

Each error case runs ``deconvnet.cli.main`` in-process and expects exit status 2, exactly one
line on stderr starting with "deconv: error:" that carries the key facts, no traceback and no
file written; the same case through the Python API raises the matching exception with the
same message. Odd but valid images (grayscale, transparency, palettes, CMYK, 16-bit, EXIF
rotation, extreme shapes, non-ASCII names) simply work. Most cases use squeezenet1_1 with
random weights (it builds in milliseconds); a few use the shipped default model.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import deconvnet
import deconvnet.dataset.runner as runner_module
import deconvnet.tasks.top9.compute as top9_module
from deconvnet.cli import main
from deconvnet.dataset.images import UnreadableImage, open_image
from deconvnet.errors import DeconvError
from deconvnet.models.transforms import ImageTransform

SMALL = ["--model", "squeezenet1_1", "--weights", "random"]  # no download; builds in milliseconds
VIS = ["visualize", *SMALL, "--layer", "features.3.squeeze", "--channel", "1"]  # 16 channels, a 55x55 map
TOP9 = ["top9", "--model", "squeezenet1_1", "--weights", "random", "--layer", "features.3.squeeze", "--workers", "0"]
MARKER = "pwned"  # what the malicious pickles would create
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


class _Payload:
    """Unpickling this calls os.mkdir(path): code execution, made visible."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _exif_rotated(upright: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF orientation that turns them back."""
    stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = io.BytesIO()
    stored.save(data, format="JPEG", exif=exif.tobytes(), quality=95)
    return data.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    """Every input of this file, good and bad, in one folder."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    f = SimpleNamespace(dir=root, marker=root / MARKER)

    def path(name: str) -> Path:
        return root / name

    Image.fromarray(rgb).save(path("photo.jpg"), quality=90)
    f.photo = path("photo.jpg")
    (root / "a folder.jpg").mkdir()
    path("empty.jpg").write_bytes(b"")
    path("text.jpg").write_text("this is not a picture\n")
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, format="JPEG")
    path("truncated.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    path("bomb.png").write_bytes(_png_header_only(40000, 40000))

    # Valid but unusual images.
    Image.fromarray(rgb).convert("L").save(path("gray.png"))
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255  # left half transparent, right half opaque red
    Image.fromarray(rgba, "RGBA").save(path("rgba.png"))
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(path("palette.png"))
    palette.save(path("palette-transparent.png"), transparency=int(np.asarray(palette)[0, 0]))
    Image.fromarray(rgb).convert("CMYK").save(path("cmyk.jpg"), quality=95)
    gradient = (np.arange(256, dtype=np.uint32)[None].repeat(16, 0) * 257).astype(np.uint16)  # 0..65535
    Image.fromarray(gradient).save(path("gray16.png"))
    upright = np.zeros((40, 20, 3), np.uint8)
    upright[:20] = (255, 0, 0)  # upright: red on top, blue below, 20 wide and 40 tall
    upright[20:] = (0, 0, 255)
    for orientation in (6, 8):
        path(f"exif{orientation}.jpg").write_bytes(_exif_rotated(Image.fromarray(upright), orientation))
    Image.fromarray(rng.integers(0, 256, (40, 2000, 3), dtype=np.uint8)).save(path("wide.png"))
    Image.fromarray(rng.integers(0, 256, (2000, 40, 3), dtype=np.uint8)).save(path("tall.png"))
    Image.fromarray(rgb).save(path("chat noir é.jpg"))

    # Weights: missing, random bytes, another architecture, and pickles that would run code.
    path("random.pt").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    path("random.safetensors").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    path("empty.pt").write_bytes(b"")
    other = {"features.0.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(2, 2)}
    torch.save(other, path("other.pt"))
    save_file(other, path("other.safetensors"))
    torch.save({"weight": _Payload(f.marker)}, path("evil-torch.pt"))
    for protocol in (0, 4):
        path(f"evil-pickle{protocol}.pt").write_bytes(pickle.dumps({"weight": _Payload(f.marker)}, protocol))
    control = root / "control"
    pickle.loads(pickle.dumps(_Payload(control)))  # the payload is real: unpickled carelessly, it runs
    assert control.is_dir()
    control.rmdir()

    folder = root / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    f.folder = folder
    f.path = path
    return f


def _listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def error_line(status: int, err: str) -> str:
    """The one "deconv: error:" line, after checking there is nothing else."""
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("deconv: error: "), err
    return lines[0]


@dataclass
class Case:
    id: str
    argv: Callable[[SimpleNamespace, Path], list]  # (files, a scratch folder) -> CLI arguments
    facts: list[str]  # what the line must say
    api: Callable[[SimpleNamespace, Path], object] | None = None  # the same request through the API
    error: type[Exception] = DeconvError
    marks: list = field(default_factory=list)


def _vis(image, out: Path, **request):
    """deconvnet.visualize with VIS's model, layer and channel."""
    defaults = {"layer": "features.3.squeeze", "channel": 1, "model": "squeezenet1_1", "weights": "random"}
    return deconvnet.visualize(image, out / "out.png", **{**defaults, **request})


def _weights(name: str) -> Case:
    return Case(f"weights {name}", lambda f, d: [*VIS[:3], "--weights", f.path(name), *VIS[5:], f.photo], [],
                lambda f, d: deconvnet.load("squeezenet1_1", weights=f.path(name)))


def _with(case: Case, facts: list[str], error: type[Exception] = DeconvError) -> Case:
    case.facts, case.error = facts, error
    return case


def _locked(f, d: Path) -> Path:
    locked = d / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "out.png"


def _plain_file(d: Path) -> Path:
    (d / "plain.txt").write_text("a file, not a folder\n")
    return d / "plain.txt"


def _existing_dir(d: Path) -> Path:
    (d / "existing").mkdir()
    return d / "existing"


CASES = [
    # Image files.
    Case("image missing", lambda f, d: [*VIS, f.path("missing.jpg")], ["image not found", "missing.jpg"],
         lambda f, d: _vis(f.path("missing.jpg"), d), UnreadableImage),
    Case("image is a folder", lambda f, d: [*VIS, f.path("a folder.jpg")],
         ["expected an image file, received a directory", "a folder.jpg"],
         lambda f, d: _vis(f.path("a folder.jpg"), d), UnreadableImage),
    Case("image empty", lambda f, d: [*VIS, f.path("empty.jpg")], ["empty (0 bytes)", "empty.jpg"],
         lambda f, d: _vis(f.path("empty.jpg"), d), UnreadableImage),
    Case("image is text", lambda f, d: [*VIS, f.path("text.jpg")],
         ["cannot read image", "text.jpg", "expected an image file", "b'this is '"],
         lambda f, d: _vis(f.path("text.jpg"), d), UnreadableImage),
    Case("image truncated", lambda f, d: [*VIS, f.path("truncated.jpg")],
         ["cannot read image", "truncated.jpg", "truncated", "damaged or incomplete"],
         lambda f, d: _vis(f.path("truncated.jpg"), d), UnreadableImage),
    Case("image bomb", lambda f, d: [*VIS, f.path("bomb.png")],
         ["refusing to decode", "bomb.png", "1,600,000,000 pixels", f"{Image.MAX_IMAGE_PIXELS:,} pixels",
          "decompression-bomb limit", "MAX_IMAGE_PIXELS"],
         lambda f, d: _vis(f.path("bomb.png"), d), UnreadableImage),
    # The same through the default model (offline, shipped).
    Case("default model, image missing", lambda f, d: ["visualize", "--layer", "conv1_2", "--channel", "3",
                                                        f.path("missing.jpg")], ["image not found", "missing.jpg"],
         lambda f, d: deconvnet.visualize(f.path("missing.jpg"), d / "o.png", layer="conv1_2", channel=3),
         UnreadableImage),
    Case("default model, image bomb", lambda f, d: ["visualize", "--layer", "conv1_2", "--channel", "3",
                                                    f.path("bomb.png")], ["refusing to decode", "1,600,000,000"],
         lambda f, d: deconvnet.visualize(f.path("bomb.png"), d / "o.png", layer="conv1_2", channel=3),
         UnreadableImage),
    Case("default model, channel", lambda f, d: ["visualize", "--layer", "conv1_2", "--channel", "64", f.photo],
         ["channel 64 is out of range for layer features.2", "(0..63)"],
         lambda f, d: deconvnet.visualize(f.photo, d / "o.png", layer="conv1_2", channel=64)),
    # What to project.
    Case("unknown model", lambda f, d: ["visualize", "--model", "alexnett", "--layer", "conv2", "--channel", "1",
                                        f.photo],
         ["unknown model 'alexnett'", "Known models:", "vgg16-hed", "alexnet,"],
         lambda f, d: deconvnet.load("alexnett")),
    Case("unknown layer", lambda f, d: [*VIS[:5], "--layer", "features.3.sqeeze", "--channel", "1", f.photo],
         ["unknown layer 'features.3.sqeeze'", "did you mean features.3.squeeze", "Valid layers:"],
         lambda f, d: _vis(f.photo, d, layer="features.3.sqeeze")),
    Case("channel too large", lambda f, d: [*VIS[:7], "--channel", "16", f.photo],
         ["channel 16 is out of range for layer features.3.squeeze", "16 channels (0..15)"],
         lambda f, d: _vis(f.photo, d, channel=16)),
    Case("channel negative", lambda f, d: [*VIS[:7], "--channel", "-1", f.photo],
         ["channel -1 is out of range", "(0..15)"], lambda f, d: _vis(f.photo, d, channel=-1)),
    Case("position outside the map", lambda f, d: [*VIS, "--position", "55,0", f.photo],
         ["position (55, 0) is outside", "55x55 map", "0 <= y < 55"],
         lambda f, d: _vis(f.photo, d, position=(55, 0))),
    Case("position on a 1-D layer", lambda f, d: ["visualize", "--model", "alexnet", "--weights", "random",
                                                  "--layer", "fc7", "--channel", "1", "--position", "0,0", f.photo],
         ["classifier.4 is one-dimensional", "give no position"],
         lambda f, d: deconvnet.visualize(f.photo, d / "o.png", layer="fc7", channel=1, position=(0, 0),
                                          model="alexnet", weights="random")),
    Case("unknown mode", lambda f, d: [*VIS, "--mode", "fancy", f.photo],
         ["unknown mode 'fancy'", "deconvnet, guided, backprop"], lambda f, d: _vis(f.photo, d, mode="fancy")),
    *[Case(f"position {text!r}", lambda f, d, text=text: [*VIS, "--position", text, f.photo],
           ["--position", "expected Y,X (two integers)", repr(text)]) for text in ("3", "a,b", "1,2,3")],
    Case("percentile", lambda f, d: [*VIS, "--percentile=-5", f.photo], ["percentile must be in (0, 100]", "-5"],
         lambda f, d: _vis(f.photo, d, percentile=-5.0)),
    # top9 arguments.
    # The API takes the one channel type (deconvnet.channels), never the text: the grammar reads '5-2'.
    Case("top9 channels '5-2'", lambda f, d: [*TOP9, "--channels", "5-2", f.folder, "-o", d / "out"],
         ["'5-2' runs backwards", "'2-5'"]),
    Case("top9 channels '99'", lambda f, d: [*TOP9, "--channels", "99", f.folder, "-o", d / "out"],
         ["channel 99 is out of range", "layer features.3.squeeze has 16 channels: valid 0-15"],
         lambda f, d: top9_module.top9(f.folder, d / "out", layers=["features.3.squeeze"], channels=[99],
                                       model="squeezenet1_1", weights="random", workers=0, progress=False)),
    # An empty item or a broken number is refused by the command line's grammar, before any model is loaded.
    Case("top9 channels '1,,2'", lambda f, d: [*TOP9, "--channels", "1,,2", f.folder, "-o", d / "out"],
         ["cannot read channel spec '1,,2'", "an empty item", "0-15,40"]),
    Case("top9 channels '0-x'", lambda f, d: [*TOP9, "--channels", "0-x", f.folder, "-o", d / "out"],
         ["cannot read channel spec '0-x'", "'0-x' is neither a channel nor a range", "0-15,40"]),
    Case("top9 no images", lambda f, d: [*TOP9, f.path("nothing here"), "-o", d / "out"],
         ["no image folder or list file", "nothing here"],
         lambda f, d: top9_module.top9(f.path("nothing here"), d / "out", layers=["features.3.squeeze"],
                                       progress=False)),
    Case("top9 k", lambda f, d: [*TOP9, "--k", "0", f.folder, "-o", d / "out"],
         ["--k must be a whole number of at least 1, received '0'"]),  # the grammar's, before the model loads
    # Weights.
    _with(_weights("missing.pt"), ["weights file not found", "missing.pt"], FileNotFoundError),
    _with(_weights("a folder.jpg"), ["expected a weights file, received a directory"]),
    _with(_weights("empty.pt"), ["weights file is empty (0 bytes)", "empty.pt"]),
    _with(_weights("random.pt"), ["cannot read weights file", "random.pt", "not a PyTorch state dict", "starts with"]),
    _with(_weights("random.safetensors"), ["cannot read weights file", "not a valid safetensors file"]),
    *[_with(_weights(name), ["weights in", name, "do not fit SqueezeNet",
                             "missing keys [features.0.bias", "unexpected keys [fc.weight]",
                             "features.0.weight: file (8, 3, 3, 3) vs model (64, 3, 3, 3)"])
      for name in ("other.pt", "other.safetensors")],
    *[_with(_weights(name), ["refused to load", name, f"it pickles {os.mkdir.__module__}.mkdir",
                             "could run code", "weights_only=True"])
      for name in ("evil-torch.pt", "evil-pickle0.pt", "evil-pickle4.pt")],
    # Where the output goes.
    Case("output folder locked", lambda f, d: [*VIS, f.photo, "-o", _locked(f, d)], ["locked", "is not writable"],
         lambda f, d: deconvnet.visualize(f.photo, d / "locked" / "out.png", layer="features.3.squeeze", channel=1,
                                          model="squeezenet1_1", weights="random"), PermissionError,
         [pytest.mark.skipif(IS_ROOT, reason="root ignores permissions; see the two cases below")]),
    Case("output under a file", lambda f, d: [*VIS, f.photo, "-o", _plain_file(d) / "out.png"],
         ["plain.txt", "is a file, not a directory"],
         lambda f, d: deconvnet.visualize(f.photo, d / "plain.txt" / "out.png", layer="features.3.squeeze", channel=1,
                                          model="squeezenet1_1", weights="random"), NotADirectoryError),
    Case("output format", lambda f, d: [*VIS, f.photo, "-o", d / "out.xyz"],
         ["matplotlib cannot save 'out.xyz'", ".png", ".svg"],
         lambda f, d: deconvnet.visualize(f.photo, d / "out.xyz", layer="features.3.squeeze", channel=1,
                                          model="squeezenet1_1", weights="random")),
    Case("top9 output under a file", lambda f, d: [*TOP9, f.folder, "-o", _plain_file(d) / "out"],
         ["output folder", "cannot be created", "plain.txt", "is a file"],
         lambda f, d: top9_module.top9(f.folder, d / "plain.txt" / "out", layers=["features.3.squeeze"],
                                       progress=False),
         NotADirectoryError),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_gets_one_clear_line(case, files, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"  # the current folder: the default output goes here
    work.mkdir()
    monkeypatch.chdir(work)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    argv = case.argv(files, scratch)
    before = {"work": _listing(work), "scratch": _listing(scratch), "inputs": _listing(files.dir)}
    try:
        line = error_line(*run_cli(argv, capsys)[::2])
        for fact in case.facts:
            assert fact in line
        if case.api is not None:
            with pytest.raises(case.error) as raised:
                case.api(files, scratch)
            assert str(raised.value) in line
        after = {"work": _listing(work), "scratch": _listing(scratch), "inputs": _listing(files.dir)}
        assert after == before, "a file was written"
        assert not files.marker.exists(), "the pickled code ran"
    finally:
        if (scratch / "locked").exists():
            (scratch / "locked").chmod(0o700)


# ---------------------------------------------------------------- through the API only

def test_top9_refuses_k_below_one_before_any_output(files, tmp_path):
    with pytest.raises(DeconvError, match="k must be an integer >= 1"):
        top9_module.top9(files.folder, tmp_path / "out", layers=["features.3.squeeze"], k=0, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def alexnet():
    return deconvnet.load("alexnet", weights="random")


def test_tensor_too_small_for_the_layer(alexnet):
    with deconvnet.Deconvnet(alexnet.model) as dn, pytest.raises(DeconvError) as raised:
        dn.project(torch.rand(1, 3, 16, 16), "conv5", 0)
    assert str(raised.value).startswith("the input is 16x16 pixels, too small for layer features.10: "
                                        "it needs at least 31x31")


@pytest.mark.parametrize("value, facts", [(float("nan"), "1 NaN and 0 infinite"),
                                          (float("inf"), "0 NaN and 1 infinite"),
                                          (-float("inf"), "0 NaN and 1 infinite")])
def test_non_finite_input(value, facts, watched):
    x = torch.rand(1, 3, 16, 16)
    x[0, 1, 2, 3] = value
    with deconvnet.Deconvnet(watched.net()) as dn, pytest.raises(DeconvError) as raised:
        dn.project(x, "4", 0)
    assert str(raised.value) == (f"expected finite input values, received {facts} value(s) in an input of shape "
                                 "(1, 3, 16, 16); check the preprocessing that made it")


@pytest.mark.parametrize("failure", ["too small", "infinite", "three dimensions", "integer input"])
def test_errors_leave_the_model_untouched(failure, watched):
    """The error paths tests/test_model_untouched.py does not cover."""
    model = watched.net()
    x = torch.rand(1, 3, 16, 16)
    before_state, before_output = watched.snapshot(model), model(x).clone()
    bad = {"too small": torch.rand(1, 3, 1, 1), "infinite": x.clone().fill_(float("inf")),
           "three dimensions": x[0], "integer input": (x * 255).to(torch.uint8)}[failure]
    with deconvnet.Deconvnet(model) as dn, pytest.raises(DeconvError):
        dn.project(bad, "4", 0)
    assert watched.hook_count(model) == 0 and not model.training
    assert all(torch.equal(v, before_state[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(x), before_output)


# ---------------------------------------------------------------- inputs that simply work

def test_grayscale_rgba_palette_cmyk_become_rgb(files):
    gray = open_image(files.path("gray.png"))
    assert gray.mode == "RGB"
    assert np.array_equal(np.asarray(gray)[..., 0], np.asarray(Image.open(files.path("gray.png"))))
    rgba = np.asarray(open_image(files.path("rgba.png")))
    assert (rgba[:, :20] == 255).all(), "transparent pixels are composed on white"
    assert (rgba[:, 20:] == (200, 0, 0)).all()
    palette = Image.open(files.path("palette.png"))
    assert np.array_equal(np.asarray(open_image(files.path("palette.png"))), np.asarray(palette.convert("RGB")))
    clear = Image.open(files.path("palette-transparent.png"))
    seen = np.asarray(open_image(files.path("palette-transparent.png")))
    hidden = np.asarray(clear) == clear.info["transparency"]
    assert hidden.any() and (seen[hidden] == 255).all()
    assert np.array_equal(seen[~hidden], np.asarray(clear.convert("RGB"))[~hidden])
    cmyk = open_image(files.path("cmyk.jpg"))
    assert cmyk.mode == "RGB"
    assert np.array_equal(np.asarray(cmyk), np.asarray(Image.open(files.path("cmyk.jpg")).convert("RGB")))


def test_16_bit_gradient_keeps_its_range(files):
    assert Image.open(files.path("gray16.png")).mode.startswith("I")
    row = np.asarray(open_image(files.path("gray16.png")))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255, "the full 16-bit range maps to the full 8-bit range"
    assert (np.diff(row) >= 0).all() and len(set(row)) == 256, "a gradient, not saturated"
    assert np.abs(row - np.arange(256)).max() <= 1


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_is_upright(files, orientation):
    path = files.path(f"exif{orientation}.jpg")
    assert Image.open(path).size == (40, 20)  # stored turned
    upright = open_image(path)
    assert upright.size == (20, 40)
    pixels = np.asarray(upright).astype(int)
    assert np.abs(pixels[5, 10] - (255, 0, 0)).max() < 30 and np.abs(pixels[35, 10] - (0, 0, 255)).max() < 30


@pytest.mark.parametrize("name", ["gray16.png", "wide.png", "tall.png"])
def test_extreme_shapes_resize_only_the_crop(files, name, monkeypatch):
    """The centre crop of a very long image equals the plain resize-then-crop, without resizing it all."""
    import torchvision.transforms.functional as TF

    image = open_image(files.path(name))
    transform = ImageTransform(resize=256, crop=224)
    expected = TF.pil_to_tensor(TF.center_crop(TF.resize(image, 256, antialias=True), 224)).float() / 255
    monkeypatch.setattr("deconvnet.models.transforms.TF.resize", lambda *a, **k: pytest.fail("resized the whole image"))
    assert (transform(image) - expected).abs().max() <= 1 / 255 + 1e-6
    strip = Image.fromarray(np.zeros((2, 50000, 3), np.uint8))  # 100 kB of pixels; 11 GB if resized whole
    assert transform(strip).shape == (3, 224, 224)


@pytest.mark.parametrize("name, default_model", [
    ("gray.png", True), ("gray16.png", True), ("chat noir é.jpg", True), ("rgba.png", False), ("palette.png", False),
    ("palette-transparent.png", False), ("cmyk.jpg", False), ("exif6.jpg", False), ("wide.png", False),
    ("tall.png", False),
])
def test_odd_images_simply_work(files, name, default_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    request = ["visualize", "--layer", "conv1_2", "--channel", "3"] if default_model else VIS
    status, out, err = run_cli([*request, files.path(name)], capsys)
    assert status == 0, err
    layer = request[request.index("--layer") + 1]
    written = tmp_path / f"{Path(name).stem}_{layer}_c{request[-1]}.png"
    assert out.splitlines()[-1] == f"wrote {written.name}"
    assert Image.open(written).size[0] > 300


def test_missing_output_folders_are_created(files, tmp_path, capsys):
    """The one output policy: a figure's missing folders are made; a folder names where the default goes."""
    nested = tmp_path / "new" / "deeper" / "fig.png"
    status, out, err = run_cli([*VIS, files.photo, "-o", nested], capsys)
    assert status == 0, err
    assert nested.read_bytes()[:4] == b"\x89PNG" and out.splitlines()[-1] == f"wrote {nested}"
    (tmp_path / "existing").mkdir()
    for folder in (tmp_path / "existing", f"{tmp_path / 'made'}/"):
        status, out, err = run_cli([*VIS, files.photo, "-o", folder], capsys)
        assert status == 0, err
        written = Path(folder) / "photo_features.3.squeeze_c1.png"
        assert written.is_file() and out.splitlines()[-1] == f"wrote {written}"


def test_top9_skips_non_image_files_and_reports_them(tiny, tmp_path, monkeypatch, capsys):
    tiny.make_images(tmp_path / "images")
    monkeypatch.setattr(runner_module, "load", lambda *args, **kwargs: tiny.model())
    status, out, err = run_cli(["top9", tmp_path / "images", "-o", tmp_path / "out", "--layer", "relu1_1",
                                "--channels", "0-1", "--k", "2", "--workers", "0"], capsys)
    assert status == 0, err
    assert "skipped 3 " in out
    listed = [line for line in out.splitlines() if line.startswith("  ")]
    root = str(tmp_path / "images")

    def reported(path):  # each file once, with its reason
        (line,) = [line for line in listed if path in line]
        assert line.count(path) == 1
        return line

    assert "not an image file (suffix '.txt')" in reported(f"{root}/notes.txt")
    assert "truncated" in reported(f"{root}/truncated.jpg")
    assert "Pillow cannot identify" in reported(f"{root}/sub/noise.png")
    assert (tmp_path / "out" / "top9.json").is_file()


# ---------------------------------------------------------------- nothing lost

@pytest.mark.parametrize("command", ["visualize", "top9"])
def test_ctrl_c_says_how_to_resume(command, files, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    module = sys.modules["deconvnet.tasks.visualize"] if command == "visualize" else top9_module
    monkeypatch.setattr(module, command, interrupted)
    argv = [*VIS, files.photo] if command == "visualize" else [*TOP9, files.folder, "-o", tmp_path / "out"]
    status, out, err = run_cli(argv, capsys)
    assert status == 130
    assert err.splitlines() == ["deconv: interrupted; re-run the same command to resume"]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("change, differs", [
    ("weights", "weights"), ("layers", "layers"), ("image list", "image list"),
])
def test_checkpoint_from_other_model_layers_or_images_is_refused(change, differs, tiny, tmp_path, monkeypatch):
    """tests/test_top9.py covers a change of k; the other things a checkpoint depends on."""
    tiny.make_images(tmp_path / "images")
    settings = dict(layers=["relu1_1"], k=3, batch_size=2, workers=0, progress=False)

    def stop(number):
        if number == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning):
        top9_module.top9(tmp_path / "images", tmp_path / "out", model=tiny.model(), on_batch=stop, **settings)
    assert (tmp_path / "out" / ".top9-checkpoint-rank0.pt").is_file()
    model, again = tiny.model(), dict(settings)
    if change == "weights":
        with torch.no_grad():
            model.model.features[0].bias += 1
    elif change == "layers":
        again["layers"] = ["relu1_1", "features.3"]
    else:
        again["limit"] = 10
    with pytest.raises(DeconvError, match="--restart") as raised:
        top9_module.top9(tmp_path / "images", tmp_path / "out", model=model, **again)
    assert f"different {differs}" in str(raised.value) or f", {differs}" in str(raised.value)
    assert not (tmp_path / "out" / "top9.json").exists()


# ---------------------------------------------------------------- end to end, as a user runs it

def _deconv() -> Path:
    command = Path(sys.executable).parent / "deconv"
    if not command.exists():
        pytest.skip("the deconv command is not installed next to this Python")
    return command


def test_installed_command_refuses_pickled_code(files, tmp_path):
    done = subprocess.run([_deconv(), *VIS[:3], "--weights", files.path("evil-pickle4.pt"), *VIS[5:], files.photo],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    line = error_line(done.returncode, done.stderr)
    assert f"refused to load {files.path('evil-pickle4.pt')}: it pickles {os.mkdir.__module__}.mkdir" in line
    assert not files.marker.exists() and not list(tmp_path.iterdir()) and done.stdout == ""


def test_installed_command_takes_a_non_ascii_name(files, tmp_path):
    image = files.path("chat noir é.jpg")
    done = subprocess.run([_deconv(), "visualize", "--layer", "conv1_2", "--channel", "3", image], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "wrote chat noir é_conv1_2_c3.png"
    assert (tmp_path / "chat noir é_conv1_2_c3.png").is_file()
