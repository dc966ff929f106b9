"""Checks that deconvnet.fileio writes whole files or nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from deconvnet import fileio
from deconvnet.fileio import (
    atomic_path,
    check_writable_dir,
    save_figure_atomic,
    save_image_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------ atomic_path


def test_temporary_file_is_hidden_next_to_destination_and_gone_after_success(tmp_path):
    destination = tmp_path / "out.png"
    with atomic_path(destination) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(".") and temporary.name.endswith(".tmp")
        assert temporary.exists() and not destination.exists()
        temporary.write_bytes(b"new")
    assert destination.read_bytes() == b"new"
    assert _names(tmp_path) == ["out.png"]


def test_exception_mid_write_keeps_old_file_and_removes_temporary(tmp_path):
    destination = tmp_path / "result.txt"
    destination.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(destination) as temporary:
            temporary.write_text("half of the new cont")
            raise RuntimeError("boom")
    assert destination.read_text() == "old"
    assert _names(tmp_path) == ["result.txt"]


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "x.bin") as temporary:
            temporary.write_bytes(b"1")
            raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_missing_directories_are_created_for_the_file(tmp_path):
    missing = tmp_path / "no_such_dir" / "deeper"
    with atomic_path(missing / "a.png") as temporary:
        temporary.write_bytes(b"png")
    assert (missing / "a.png").read_bytes() == b"png"
    assert _names(missing) == ["a.png"]


def test_a_directory_that_cannot_be_created_is_reported_before_the_block_runs(tmp_path):
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    ran = False
    with pytest.raises(NotADirectoryError, match=r"'.*sub' cannot be created: '.*plain.txt' is a file"):
        with atomic_path(tmp_path / "plain.txt" / "sub" / "a.png"):
            ran = True
    assert not ran


def test_destination_that_is_a_directory_is_rejected(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(IsADirectoryError, match="sub"):
        with atomic_path(tmp_path / "sub"):
            pass


# ----------------------------------------------------------- check_writable_dir


def test_check_writable_dir_accepts_a_writable_directory(tmp_path):
    assert check_writable_dir(tmp_path) == tmp_path
    assert check_writable_dir(str(tmp_path)) == tmp_path


def test_check_writable_dir_accepts_a_missing_directory_and_creates_nothing(tmp_path):
    assert check_writable_dir(tmp_path / "missing" / "deeper") == tmp_path / "missing" / "deeper"
    assert list(tmp_path.iterdir()) == []


def test_check_writable_dir_errors_name_the_directory(tmp_path):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="plain.txt"):
        check_writable_dir(a_file)


def test_unwritable_directory_is_reported(tmp_path, monkeypatch):
    # Simulated, because root (as in CI containers) may write anywhere.
    monkeypatch.setattr(fileio.os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match=str(tmp_path.name)):
        check_writable_dir(tmp_path)
    with pytest.raises(PermissionError, match=r"'.*new' cannot be created: '.*' is not writable"):
        check_writable_dir(tmp_path / "new")
    with pytest.raises(PermissionError):
        write_text_atomic(tmp_path / "a.txt", "x")
    monkeypatch.undo()
    assert _names(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_really_read_only_directory_is_reported(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="locked"):
            write_bytes_atomic(locked / "a.bin", b"x")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------- text writers


def test_write_bytes_and_text(tmp_path):
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\xff") == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    write_text_atomic(tmp_path / "t.txt", "café\nline 2\n")
    assert (tmp_path / "t.txt").read_bytes() == "café\nline 2\n".encode("utf-8")
    with pytest.raises(TypeError, match="write_text_atomic"):
        write_bytes_atomic(tmp_path / "x", "text")
    with pytest.raises(TypeError, match="write_bytes_atomic"):
        write_text_atomic(tmp_path / "x", b"bytes")
    assert _names(tmp_path) == ["b.bin", "t.txt"]


def test_write_json_layout_order_unicode_and_newline(tmp_path):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"zeta": 1, "alpha": "é", "list": [1, 2]})
    expected = '{\n  "zeta": 1,\n  "alpha": "é",\n  "list": [\n    1,\n    2\n  ]\n}\n'
    assert path.read_text(encoding="utf-8") == expected


def test_write_json_converts_numpy_values(tmp_path):
    path = tmp_path / "n.json"
    write_json_atomic(path, {"x": np.float32(0.5), "a": np.arange(3), "p": Path("a/b")})
    assert json.loads(path.read_text()) == {"x": 0.5, "a": [0, 1, 2], "p": "a/b"}


def test_unserialisable_json_leaves_existing_file_alone(tmp_path):
    path = tmp_path / "keep.json"
    path.write_text("{}\n")
    with pytest.raises(TypeError, match="object"):
        write_json_atomic(path, {"bad": object()})
    assert path.read_text() == "{}\n"
    assert _names(tmp_path) == ["keep.json"]


# --------------------------------------------------------------------- images


def test_png_round_trip_is_exact(tmp_path):
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = save_image_atomic(tmp_path / "a.png", pixels)
    with Image.open(path) as reread:
        assert reread.format == "PNG"
        assert np.array_equal(np.asarray(reread), pixels)
    assert _names(tmp_path) == ["a.png"]


def test_format_comes_from_suffix_and_pil_images_are_accepted(tmp_path):
    save_image_atomic(tmp_path / "b.JPG", Image.new("RGB", (8, 8), (255, 0, 0)), quality=90)
    with Image.open(tmp_path / "b.JPG") as reread:
        assert reread.format == "JPEG" and reread.size == (8, 8)


def test_image_errors_are_clear_and_write_nothing(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\.png"):
        save_image_atomic(tmp_path / "a.unknownext", rgb)
    with pytest.raises(ValueError, match=r"\.png"):
        save_image_atomic(tmp_path / "no_suffix", rgb)
    with pytest.raises(TypeError, match="uint8"):
        save_image_atomic(tmp_path / "f.png", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="channels"):
        save_image_atomic(tmp_path / "c.png", np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="JPEG"):
        save_image_atomic(tmp_path / "r.jpg", np.zeros((2, 2, 4), np.uint8))
    assert _names(tmp_path) == []


def test_failing_image_encoder_keeps_previous_picture(tmp_path, monkeypatch):
    path = tmp_path / "sheet.png"
    path.write_bytes(b"previous")

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image_atomic(path, np.zeros((2, 2, 3), np.uint8))
    assert path.read_bytes() == b"previous"
    assert _names(tmp_path) == ["sheet.png"]


# -------------------------------------------------------------------- figures


def _figure() -> Figure:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    return fig


def test_figure_saved_in_format_of_suffix(tmp_path):
    save_figure_atomic(tmp_path / "f.png", _figure(), dpi=50)
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    save_figure_atomic(tmp_path / "f.svg", _figure())
    assert b"<svg" in (tmp_path / "f.svg").read_bytes()
    assert _names(tmp_path) == ["f.png", "f.svg"]


def test_figure_with_unknown_suffix_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        save_figure_atomic(tmp_path / "f.xyz", _figure())
    assert _names(tmp_path) == []


def test_pyplot_figure_is_closed_after_saving(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    number = fig.number
    save_figure_atomic(tmp_path / "p.png", fig, dpi=20)
    assert not plt.fignum_exists(number)
