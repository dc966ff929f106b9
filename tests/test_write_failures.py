"""A full disk or an I/O error while writing is reported as what failed, with its own exit status.

The failures are simulated by making a write raise OSError(ENOSPC) (or EIO), as the OS
would; the exit status and the message must come from the exception's type and errno.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import deconvnet.dataset.runner as runner_module
from deconvnet.cli import EXIT_FAILED, EXIT_USAGE, exit_status, main
from deconvnet.dataset import images
from deconvnet.errors import DeconvError, WriteError
from deconvnet.fileio import save_image_atomic, write_json_atomic

VIS = ["visualize", "--model", "squeezenet1_1", "--weights", "random", "--layer", "features.3.squeeze",
       "--channel", "1"]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("deconv: error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_full_disk_while_saving_the_figure(tmp_path, monkeypatch, capsys):
    photo = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(Figure, "savefig", _disk_full)
    assert main([*VIS, str(photo), "-o", str(out / "fig.png")]) == EXIT_FAILED
    line = _one_error_line(capsys)
    assert f"could not write {out / 'fig.png'}: No space left on device (ENOSPC)" in line
    assert "free some space" in line
    assert not list(out.iterdir()), "a temporary or partial file was left"


def test_a_full_disk_during_top9(tiny, tmp_path, monkeypatch, capsys):
    tiny.make_images(tmp_path / "images")
    monkeypatch.setattr(runner_module, "load", lambda *args, **kwargs: tiny.model())
    monkeypatch.setattr(Path, "write_bytes", _disk_full)  # every file fileio writes goes through it
    status = main(["top9", str(tmp_path / "images"), "-o", str(tmp_path / "out"), "--layer", "relu1_1",
                   "--channels", "0", "--k", "2", "--workers", "0"])
    assert status == EXIT_FAILED
    line = capsys.readouterr().err.splitlines()[-1]  # after the progress bar and the skipped files' warnings
    assert line.startswith(f"deconv: error: could not write {tmp_path / 'out'}")
    assert "No space left on device (ENOSPC)" in line
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_the_api_raises_a_write_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", lambda *a, **k: _raise(OSError(errno.EIO, os.strerror(errno.EIO))))
    with pytest.raises(WriteError) as raised:
        save_image_atomic(tmp_path / "sheet.png", np.zeros((4, 4, 3), np.uint8))
    assert raised.value.errno == errno.EIO and raised.value.filename == str(tmp_path / "sheet.png")
    assert isinstance(raised.value, OSError) and str(raised.value).startswith(f"could not write {tmp_path}")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert write_json_atomic(tmp_path / "ok.json", {"a": 1}).read_text() == '{\n  "a": 1\n}\n'


def _raise(error: Exception):
    raise error


@pytest.mark.parametrize("error, status", [
    (WriteError("out/a.png", OSError(errno.ENOSPC, "No space left on device")), EXIT_FAILED),
    (OSError(errno.EIO, "Input/output error"), EXIT_FAILED),
    (OSError(errno.ENOSPC, "No space left on device"), EXIT_FAILED),  # e.g. creating the output folder
    (DeconvError("unknown layer 'conv9'"), EXIT_USAGE),
    (FileNotFoundError("no image folder or list file at photos"), EXIT_USAGE),  # ours: no errno
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.jpg"), EXIT_USAGE),
    (PermissionError(errno.EACCES, "Permission denied", "out"), EXIT_USAGE),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a.txt/out"), EXIT_USAGE),
])
def test_exit_status_by_type_and_errno(error, status):
    assert exit_status(error) == status


def test_bad_input_is_still_status_2(tmp_path, capsys):
    assert main([*VIS, str(tmp_path / "missing.jpg")]) == EXIT_USAGE
    assert "image not found" in _one_error_line(capsys)


def test_bomb_size_comes_from_the_header_not_from_pillows_message(tmp_path, monkeypatch):
    """Pillow's wording may change: the refused image's declared size is read from its header."""
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)

    def reworded(size):  # the limit check, as a future Pillow might word it
        if Image.MAX_IMAGE_PIXELS is not None:
            raise Image.DecompressionBombError("image too big")

    monkeypatch.setattr(Image, "_decompression_bomb_check", reworded)
    with pytest.raises(images.UnreadableImage, match="its header declares 60,000 pixels"):
        images.open_image(path)


@pytest.mark.parametrize("command, checkpoint", [
    (["top9", "--layer", "relu1_1"], ".top9-checkpoint-rank0.pt"),
    (["microscope", "--layers", "conv1_1"], "data/.scan-checkpoint-rank0.pt"),
])
def test_a_full_disk_while_checkpointing_names_the_checkpoint(command, checkpoint, tiny, tmp_path, monkeypatch,
                                                              capsys):
    """The one checkpoint class of the dataset runner, under top9 and the microscope alike."""
    tiny.make_images(tmp_path / "images")
    monkeypatch.setattr(runner_module, "load", lambda *args, **kwargs: tiny.model(head=True))
    write_bytes = Path.write_bytes

    def full_for_checkpoints(self, data):
        if "checkpoint" in self.name:
            _disk_full()
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_for_checkpoints)
    status = main([command[0], str(tmp_path / "images"), "-o", str(tmp_path / "out"), *command[1:], "--k", "2",
                   "--workers", "0"])
    assert status == EXIT_FAILED
    line = capsys.readouterr().err.splitlines()[-1]  # after the progress bar and the skipped files' warnings
    assert line.startswith(f"deconv: error: could not write {tmp_path / 'out' / checkpoint}: No space left on device")
    assert not list((tmp_path / "out").rglob("*.tmp"))
