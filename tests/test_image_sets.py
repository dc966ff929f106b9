"""Every dataset command (top9, microscope, evolution) reads its image set the same way, with one
behaviour for each bad input: one image is a one-image set, a binary file is never read as a list
file, a set with no readable image is refused in one line naming what was skipped, and the run
options (device, batch size, workers, limit) are checked the same everywhere."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deconvnet.dataset.runner as runner_module
from deconvnet.cli import main
from deconvnet.dataset.imageset import expand, image_set, is_list_file
from deconvnet.errors import DeconvError
from deconvnet.models.tiny_zfnet import TinyZFNet
from deconvnet.tasks.evolution import evolution
from deconvnet.tasks.microscope import microscope
from deconvnet.tasks.top9.compute import top9
from top9_tiny import SIZE, tiny_model

COMMANDS = ["top9", "microscope", "evolution"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """One tiny-zfnet checkpoint, for evolution."""
    path = tmp_path_factory.mktemp("checkpoints") / "step1.pt"
    torch.manual_seed(0)
    torch.save(TinyZFNet().state_dict(), path)
    return path


@pytest.fixture
def tiny_loaded(request, monkeypatch):
    """top9 and microscope load the tiny integer network whatever model they are given (evolution loads
    its checkpoints of tiny-zfnet)."""
    if request.node.callspec.params["command"] != "evolution":
        monkeypatch.setattr(runner_module, "load", lambda *args, **kwargs: tiny_model(head=True))


def _argv(command: str, images: Path, out: Path, checkpoint: Path) -> list[str]:
    common = ["--workers", "0", "--batch-size", "2"]
    if command == "top9":
        return ["top9", str(images), "-o", str(out), "--layer", "relu1_1", "--k", "1", *common]
    if command == "microscope":
        return ["microscope", str(images), "-o", str(out), "--layers", "conv1_1", "--k", "1", *common]
    return ["evolution", str(checkpoint), str(images), "-o", str(out), "--model", "tiny-zfnet", "--layer", "conv2",
            "--channels", "0-1", *common]


def _photo(path: Path) -> Path:
    pixels = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue())
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("deconv: error: "), err
    return lines[0]


def _scored_images(command: str, out: Path) -> int:
    if command == "top9":
        return json.loads((out / "top9.json").read_text())["images"]
    if command == "microscope":
        return json.loads((out / "data" / "top9.json").read_text())["images"]
    return json.loads((out / "evolution.json").read_text())["images"]


@pytest.mark.parametrize("command", COMMANDS)
def test_one_image_is_a_one_image_set(command, tiny_loaded, checkpoint, tmp_path, capsys):
    """`deconv top9 --layer conv1_1 photo.jpg -o out`: the photo is scanned, not read as a list of paths."""
    photo = _photo(tmp_path / "photo.jpg")
    out = tmp_path / "out"
    assert main(_argv(command, photo, out, checkpoint)) == 0, capsys.readouterr().err
    assert _scored_images(command, out) == 1


@pytest.mark.parametrize("command", COMMANDS)
def test_a_binary_file_is_never_read_as_a_list_file(command, tiny_loaded, checkpoint, tmp_path, capsys):
    """A JPEG without a suffix is an image; random bytes are an unreadable image, named in one line."""
    jpeg = _photo(tmp_path / "snapshot")
    assert not is_list_file(jpeg) and expand(jpeg) == [jpeg]
    assert main(_argv(command, jpeg, tmp_path / "out", checkpoint)) == 0, capsys.readouterr().err
    assert _scored_images(command, tmp_path / "out") == 1
    capsys.readouterr()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    assert main(_argv(command, blob, tmp_path / "blob-out", checkpoint)) == 2
    line = _one_error_line(capsys)
    assert "none of the 1 files of the image set could be read as an image" in line and str(blob) in line
    assert not (tmp_path / "blob-out").exists(), "refused before any output"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_list_of_unreadable_files_is_refused_naming_them(command, tiny_loaded, checkpoint, tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a picture\n")
    listing = tmp_path / "images.txt"
    listing.write_text("# two files, neither an image\nempty.png\ntext.jpg\n")
    assert is_list_file(listing)
    assert main(_argv(command, listing, tmp_path / "out", checkpoint)) == 2
    line = _one_error_line(capsys)
    assert "none of the 2 files of the image set could be read as an image" in line
    assert "empty.png" in line and "text.jpg" in line
    assert not (tmp_path / "out").exists()


def test_files_folders_and_list_files_expand_to_each_image_once(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.png", "sub/c.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "sub" / "notes.txt").write_text("a.png\n")  # inside a folder: neither an image nor a list
    (tmp_path / "all.txt").write_text(f"sub\n\n# a comment\na.png\n{tmp_path / 'sub' / 'b.png'}\n")
    assert expand(tmp_path / "all.txt") == [tmp_path / "sub" / "b.png", tmp_path / "sub" / "c.jpg", tmp_path / "a.png"]
    assert expand([tmp_path / "a.png", tmp_path / "sub", tmp_path / "all.txt"]) == [
        tmp_path / "a.png", tmp_path / "sub" / "b.png", tmp_path / "sub" / "c.jpg"]
    with pytest.raises(FileNotFoundError, match="no image folder or list file at"):
        expand(tmp_path / "missing")


@pytest.mark.parametrize("command", COMMANDS)
def test_folders_list_files_and_images_together_are_one_set(command, tiny_loaded, checkpoint, tmp_path, capsys):
    """`deconv top9 cats/ more.txt e.jpg ...`: every image once, named relative to the folder the sources share."""
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    for name in ("cats/a.jpg", "cats/b.jpg", "dogs/d.jpg", "e.jpg"):
        _photo(tmp_path / name)
    (tmp_path / "more.txt").write_text("dogs/d.jpg\ncats/a.jpg\n")  # a.jpg also comes from the folder: once
    argv = _argv(command, tmp_path / "cats", tmp_path / "out", checkpoint)
    at = argv.index(str(tmp_path / "cats"))
    argv[at + 1:at + 1] = [str(tmp_path / "more.txt"), str(tmp_path / "e.jpg")]
    assert main(argv) == 0, capsys.readouterr().err
    assert _scored_images(command, tmp_path / "out") == 4
    assert image_set([tmp_path / "cats", tmp_path / "more.txt", tmp_path / "e.jpg"]).names == [
        "cats/a.jpg", "cats/b.jpg", "dogs/d.jpg", "e.jpg"]
    assert image_set([tmp_path / "cats"]).names == image_set(tmp_path / "cats").names == ["a.jpg", "b.jpg"]


def _call(command: str, images: Path, out: Path, checkpoint: Path, **options):
    if command == "top9":
        return top9(images, out, layers=["relu1_1"], model=tiny_model(), progress=False, **options)
    if command == "microscope":
        return microscope(images, out, layers=["conv1_1"], model=tiny_model(), progress=False, **options)
    return evolution([checkpoint], images, out, model="tiny-zfnet", layer="conv2", progress=False, **options)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, received 0"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1, received 2.5"),
    ({"workers": -1}, "workers must be an integer >= 0, received -1"),
    ({"limit": 0}, "limit must be an integer >= 1, received 0"),
    ({"limit": True}, "limit must be an integer >= 1, received True"),
    ({"device": "tpu"}, "unknown device 'tpu': expected 'cpu' or 'cuda'"),
])
def test_run_options_are_checked_the_same_everywhere(command, options, message, checkpoint, tmp_path):
    photo = _photo(tmp_path / "photo.jpg")
    with pytest.raises(DeconvError) as raised:
        _call(command, photo, tmp_path / "out", checkpoint, **options)
    assert message in str(raised.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_limit_keeps_the_first_images(command, checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        _photo(folder / f"{i}.jpg")
    _call(command, folder, tmp_path / "out", checkpoint, limit=3, workers=0)
    assert _scored_images(command, tmp_path / "out") == 3
