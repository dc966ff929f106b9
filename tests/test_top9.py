"""The top-9 feature on a tiny integer-weighted CNN: exact top-k, resuming, torchrun, crops, outputs."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

import deconvnet.dataset.runner as runner_module
from deconvnet.engine import Deconvnet
from deconvnet.errors import DeconvError
from deconvnet.tasks.common import folder_names, project_channel
from deconvnet.tasks.top9.compute import top9

LAYERS = ["relu1_1", "features.3"]  # an alias and a module name; conv2_1 is pre-ReLU, values may be negative
SETTINGS = dict(layers=LAYERS, k=4, batch_size=2, workers=0, progress=False)
pytestmark = pytest.mark.filterwarnings("ignore:skipped .*:UserWarning")  # the broken files, on purpose


@pytest.fixture(scope="module")
def images(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return root, tiny.make_images(root)


@pytest.fixture(scope="module")
def reference(tiny, images, tmp_path_factory):
    """An uninterrupted single-process run with SETTINGS."""
    out = tmp_path_factory.mktemp("reference")
    summary = top9(images[0], out, model=tiny.model(), **SETTINGS)
    return out, summary, json.loads((out / "top9.json").read_text())


def _results(out: Path) -> dict:
    return json.loads((out / "top9.json").read_text())


def _no_debris(out: Path) -> None:
    assert not [p for p in out.rglob("*.tmp")], "temporary files left behind"
    assert not list(out.glob(".top9-checkpoint*")), "checkpoint not deleted after the scan"


def brute_force(tiny, paths: list[Path], root: Path, module_index: int, k: int) -> dict[str, list[dict]]:
    """Every image's full activation map straight from the model, then a plain sort."""
    model = tiny.model().model
    stem = model.features[: module_index + 1]
    maps = []
    with torch.no_grad():
        for path in paths:
            x = tiny.TRANSFORM(Image.open(path).convert("RGB"))[None]
            maps.append(stem(x)[0].numpy())  # (C, H, W)
    table = {}
    for channel in range(maps[0].shape[0]):
        scored = []
        for index, (path, fmap) in enumerate(zip(paths, maps)):
            flat = fmap[channel].ravel()
            where = int(np.argmax(flat))  # numpy: the first maximum in row-major order
            y, x = divmod(where, fmap.shape[2])
            scored.append((-float(flat[where]), index, {"image": path.relative_to(root).as_posix(),
                                                        "y": y, "x": x, "value": float(flat[where])}))
        table[str(channel)] = [entry for _, _, entry in sorted(scored, key=lambda s: s[:2])[:k]]
    return table


@pytest.mark.parametrize("k", [4, 30])
def test_top_k_equals_brute_force(tiny, images, tmp_path, k):
    root, good = images
    summary = top9(root, tmp_path, layers=LAYERS, k=k, batch_size=5, workers=2 if k == 4 else 0,
                   model=tiny.model(), progress=False)
    results = _results(tmp_path)
    assert results["images"] == summary.images == len(good)
    assert results["layers"]["relu1_1"] == brute_force(tiny, good, root, 1, k)
    assert results["layers"]["features.3"] == brute_force(tiny, good, root, 3, k)
    if k >= len(good):  # every image is listed: the identical twins tie, the earlier path first
        for table in results["layers"].values():
            for entries in table.values():
                names = [e["image"] for e in entries]
                a, b = names.index("dup_a.png"), names.index("dup_b.png")
                assert b == a + 1 and entries[a]["value"] == entries[b]["value"]
                assert (entries[a]["y"], entries[a]["x"]) == (entries[b]["y"], entries[b]["x"])
    _no_debris(tmp_path)


def test_outputs_and_json_format(tiny, reference):
    out, summary, results = reference
    assert set(results) == {"model", "weights_sha256", "mode", "transform", "images", "layers"}
    assert results["mode"] == "deconvnet" and results["transform"]["crop"] == tiny.SIZE
    assert list(results["layers"]) == LAYERS
    assert summary.rendered == 4 + 6 and summary.reused == 0
    for layer, channels in (("relu1_1", 4), ("features.3", 6)):
        assert list(results["layers"][layer]) == [str(c) for c in range(channels)]
        for channel, entries in results["layers"][layer].items():
            assert len(entries) == 4
            values = [e["value"] for e in entries]
            assert values == sorted(values, reverse=True)
            assert (out / layer / f"channel_{int(channel):04d}.png").is_file()
        assert (out / layer / "mosaic.png").is_file()
    assert (out / "index.html").is_file()
    _no_debris(out)


def test_rerun_reuses_everything(tiny, reference, images):
    out, _, results = reference
    summary = top9(images[0], out, model=tiny.model(), **SETTINGS)
    assert (summary.rendered, summary.reused) == (0, 10)
    assert _results(out) == results


def test_interrupted_rendering_resumes_without_scanning(tiny, reference, images, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    (out / "features.3" / "channel_0002.png").unlink()
    (out / "index.html").unlink()
    debris = out / "relu1_1" / ".channel_0001.png.0badcafe.tmp"  # a write cut short by SIGKILL
    debris.write_bytes(b"half a png")

    def scanned(number):
        raise AssertionError("the finished scan ran again")

    summary = top9(images[0], out, model=tiny.model(), on_batch=scanned, **SETTINGS)
    assert (summary.rendered, summary.reused) == (1, 9)
    assert summary.skipped == reference[1].skipped
    assert _results(out) == reference[2]
    assert (out / "index.html").is_file() and not debris.exists()
    _no_debris(out)


def test_broken_and_non_image_files_are_skipped(tiny, reference, images):
    root, good = images
    _, summary, _ = reference
    reasons = {Path(path).relative_to(root).as_posix(): reason for path, reason in summary.skipped}
    assert set(reasons) == {"truncated.jpg", "sub/noise.png", "notes.txt"}
    assert "not an image" in reasons["notes.txt"]
    assert summary.images == len(good)
    with pytest.warns(UserWarning, match="truncated.jpg"):
        top9(root, Path(root).parent / "warned", model=tiny.model(), **{**SETTINGS, "layers": ["relu1_1"]})



def _interrupt_at_batch(number, tiny, images, out):
    """Run top9 into ``out`` and stop it with Ctrl-C when batch ``number`` starts."""
    def stop(batch):
        if batch == number:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        top9(images[0], out, model=tiny.model(), on_batch=stop, **SETTINGS)


def test_interrupted_run_resumes_to_the_same_results(tiny, reference, images, tmp_path):
    _interrupt_at_batch(3, tiny, images, tmp_path)
    assert (tmp_path / ".top9-checkpoint-rank0.pt").is_file()
    assert not (tmp_path / "top9.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    top9(images[0], tmp_path, model=tiny.model(), **SETTINGS)
    assert _results(tmp_path) == reference[2]
    _no_debris(tmp_path)


def test_killed_run_resumes_to_the_same_results(tiny, reference, images, tmp_path, run_python):
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        import deconvnet.tasks.top9.compute as t
        from top9_tiny import tiny_model
        def kill(number):
            if number == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        t.top9({str(images[0])!r}, {str(tmp_path / 'out')!r}, model=tiny_model(), on_batch=kill, **{SETTINGS!r})
    """))
    done = run_python(script, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    out = tmp_path / "out"
    assert (out / ".top9-checkpoint-rank0.pt").is_file() and not (out / "top9.json").exists()
    top9(images[0], out, model=tiny.model(), **SETTINGS)
    assert _results(out) == reference[2]
    _no_debris(out)


def test_checkpoint_from_other_settings_is_refused(tiny, images, tmp_path):
    # the hook runs before the batch's checkpoint: batch 0 is saved
    _interrupt_at_batch(1, tiny, images, tmp_path)
    with pytest.raises(DeconvError, match="--restart") as error:
        top9(images[0], tmp_path, model=tiny.model(), **{**SETTINGS, "k": 3})
    assert "(different k)" in str(error.value)
    top9(images[0], tmp_path, model=tiny.model(), restart=True, **{**SETTINGS, "k": 3})
    assert all(len(e) == 3 for table in _results(tmp_path)["layers"].values() for e in table.values())
    _no_debris(tmp_path)


def test_torchrun_two_processes_match_one(reference, images, tmp_path, torchrun):
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(f"""
        from deconvnet.tasks.top9.compute import top9
        from top9_tiny import tiny_model
        summary = top9({str(images[0])!r}, {str(tmp_path / 'out')!r}, model=tiny_model(), **{SETTINGS!r})
        # one file per rank: the ranks' stdout lines can interleave
        import os, pathlib
        line = f"{{summary.images}} {{summary.rendered}} {{summary.reused}} {{len(summary.skipped)}}"
        pathlib.Path({str(tmp_path)!r}, "summary_" + os.environ["RANK"]).write_text(line)
    """))
    done = torchrun(script, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    assert _results(out) == reference[2]
    summaries = [(tmp_path / f"summary_{rank}").read_text().split() for rank in (0, 1)]
    assert summaries == [[str(reference[1].images), "10", "0", "3"]] * 2
    for layer, table in reference[2]["layers"].items():
        for channel in table:
            assert (out / layer / f"channel_{int(channel):04d}.png").is_file()
    _no_debris(out)


def test_receptive_field_crops(tiny, images):
    """conv2_1 of the tiny net: 3x3 conv, 2x2 pool, 3x3 conv, paddings 1 -> 8x8 fields, stride 2, offset -3."""
    loaded = tiny.model()
    dn = Deconvnet(loaded.model)
    x = tiny.TRANSFORM(Image.open(images[1][0]).convert("RGB"))[None].repeat(2, 1, 1, 1)
    conv = dn.activations(x[:1], ["features.3"])["features.3"][0]
    positions = [(0, 0), (8, 8)]
    expected = [(-3, -3, 8, 8), (13, 13, 8, 8)]  # rows -3 + 2y .. -3 + 2y + 7, likewise columns
    channel = next(c for c in range(conv.shape[0]) if all(conv[c][p] > 0 for p in positions))
    projections, patches, boxes, values = project_channel(dn, tiny.TRANSFORM, x, "features.3", channel, positions,
                                                          "deconvnet")
    assert [tuple(b) for b in boxes] == expected
    assert values == [float(conv[channel][p]) for p in positions]
    picture = tiny.TRANSFORM.to_uint8(x[0])
    assert all(p.shape == (8, 8, 3) for p in projections + patches)
    assert (patches[0][:3] == 0).all() and (patches[0][:, :3] == 0).all()  # padded past the border
    assert (patches[0][3:, 3:] == picture[:5, :5]).all()
    assert (patches[1] == picture[13:21, 13:21]).all()
    maps = dn.project_units(x, "features.3", [(i, channel, p) for i, p in enumerate(positions)]).maps
    for full, (top, left, height, width) in zip(maps, expected):
        inside = torch.zeros(tiny.SIZE, tiny.SIZE, dtype=torch.bool)
        inside[max(top, 0):top + height, max(left, 0):left + width] = True
        assert (full[:, ~inside] == 0).all(), "projection leaks outside the receptive field"
        assert (full[:, inside] != 0).any()


def test_fully_connected_layer(tiny, images, tmp_path):
    root, good = images
    top9(root, tmp_path, layers=["head"], channels=[1, 3], k=5, model=tiny.model(head=True), batch_size=4,
         workers=0, progress=False)
    table = _results(tmp_path)["layers"]["head"]
    assert list(table) == ["1", "3"]
    model = tiny.model(head=True).model
    with torch.no_grad():
        logits = torch.cat([model(tiny.TRANSFORM(Image.open(p).convert("RGB"))[None]) for p in good])
    for channel, entries in table.items():
        assert all(e["y"] is None and e["x"] is None for e in entries)
        order = sorted(range(len(good)), key=lambda i: (-float(logits[i, int(channel)]), i))[:5]
        assert [e["image"] for e in entries] == [good[i].relative_to(root).as_posix() for i in order]
        assert [e["value"] for e in entries] == pytest.approx([float(logits[i, int(channel)]) for i in order])
        assert (tmp_path / "head" / f"channel_{int(channel):04d}.png").is_file()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src")]


def test_gallery_links_only_existing_files(reference):
    out, _, results = reference
    page = (out / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    files = [link for link in parser.links if not link.startswith("#")]
    assert len(files) >= 2 * (4 + 6)
    for link in files:
        assert "://" not in link and not link.startswith("/")
        assert (out / unquote(link)).is_file(), link
    assert "odd name &amp; &lt;x&gt;.png" in page and "<x>" not in page
    anchors = {link[1:] for link in parser.links if link.startswith("#")}
    assert all(f'id="{anchor}"' in page for anchor in anchors)


def test_bad_arguments(tiny, images, tmp_path, monkeypatch):
    model = tiny.model()
    with pytest.raises(DeconvError, match="layer relu1_1 has 4 channels: valid 0-3"):
        top9(images[0], tmp_path, layers=["relu1_1"], channels=[0, 4], model=model, progress=False)
    with pytest.raises(DeconvError, match="unknown layer"):
        top9(images[0], tmp_path, layers=["conv9"], model=model, progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same check on a machine with a GPU
    with pytest.raises(DeconvError, match="CUDA is not available"):
        top9(images[0], tmp_path, layers=["relu1_1"], model=model, device="cuda", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeconvError, match="no images"):
        top9(empty, tmp_path / "o", layers=["relu1_1"], model=model, progress=False)


def test_image_list_file_and_limit(tiny, images, tmp_path):
    root, good = images
    listing = root / "list.txt"
    listing.write_text("\n".join(p.relative_to(root).as_posix() for p in good[::-1]) + "\n")
    try:
        summary = top9(listing, tmp_path, layers=["relu1_1"], k=3, limit=6, model=tiny.model(), workers=0,
                       progress=False)
    finally:
        listing.unlink()
    listed = [p.relative_to(root).as_posix() for p in good[::-1][:6]]
    assert summary.images == 6
    for entries in _results(tmp_path)["layers"]["relu1_1"].values():
        assert all(e["image"] in listed for e in entries)


def test_folder_names():
    assert folder_names(["features.3:2", "a/b", "a:b", ".x"]) == {
        "features.3:2": "features.3_2", "a/b": "a_b", "a:b": "a_b-2", ".x": "x"}


def test_another_mode_reuses_the_finished_scan(tiny, reference, images, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)

    def scanned(number):
        raise AssertionError("the scan ran again for another mode")

    summary = top9(images[0], out, model=tiny.model(), mode="guided", on_batch=scanned, **SETTINGS)
    assert (summary.rendered, summary.reused) == (10, 0)  # every sheet redrawn with the guided rule
    assert _results(out) == {**reference[2], "mode": "guided"}
    summary = top9(images[0], out, model=tiny.model(), mode="guided", **SETTINGS)
    assert (summary.rendered, summary.reused) == (0, 10)


def test_a_checkpoint_resumes_under_another_mode(tiny, reference, images, tmp_path):
    _interrupt_at_batch(3, tiny, images, tmp_path)
    done = []
    top9(images[0], tmp_path, model=tiny.model(), mode="backprop", render=False, on_batch=done.append, **SETTINGS)
    assert done and len(done) < 8, "resumed where the deconvnet run stopped"  # 18 files in batches of 2: 9 in all
    assert _results(tmp_path) == {**reference[2], "mode": "backprop"}


def test_the_callers_model_is_not_moved_to_another_device(tiny, images, tmp_path, monkeypatch):
    loaded = tiny.model()
    moved = []
    module_to = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: (moved.append(self), module_to(self, *a, **k))[1])
    monkeypatch.setattr(runner_module, "pick_device", lambda device: torch.device("cpu", 0))  # "another" device
    top9(images[0], tmp_path, model=loaded, render=False, **{**SETTINGS, "layers": ["relu1_1"]})
    assert moved and all(module is not loaded.model for module in moved), "the caller's model was moved"
    assert _results(tmp_path)["layers"]["relu1_1"] == brute_force(tiny, images[1], images[0], 1, SETTINGS["k"])


def test_torchrun_a_failing_rank_stops_every_rank_with_its_error(images, tmp_path, torchrun):
    """Rank 1 hits a full disk in the middle of the scan: rank 0 must not wait for it forever."""
    script = tmp_path / "failing.py"
    script.write_text(textwrap.dedent(f"""
        import errno, functools, os, pathlib, sys
        import deconvnet.dataset.runner as r
        import deconvnet.tasks.top9.compute as t
        from deconvnet.cli import main
        from top9_tiny import tiny_model
        r.load = lambda *args, **kwargs: tiny_model()
        def breaks(number):
            if os.environ["RANK"] == "1" and number == 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        t.top9 = functools.partial(t.top9, on_batch=breaks)  # what the command calls
        status = main(["top9", {str(images[0])!r}, "-o", {str(tmp_path / 'out')!r}, "--layer", "relu1_1",
                       "--k", "2", "--batch-size", "2", "--workers", "0"])
        pathlib.Path({str(tmp_path)!r}, "status_" + os.environ["RANK"]).write_text(str(status))
        sys.exit(status)
    """))
    started = time.monotonic()
    done = torchrun(script, 2, timeout=150)
    assert time.monotonic() - started < 120, "the ranks did not stop promptly"
    assert done.returncode != 0
    # torchrun stops the whole job as soon as one process exits, so the process that exits second may
    # be terminated before it prints or writes its status: each process that got that far reports the
    # failing rank's error and exit status 1, and at least one did.
    statuses = [path.read_text() for path in sorted(tmp_path.glob("status_*"))]
    lines = [line for line in done.stderr.splitlines() if line.startswith("deconv: error:")]
    assert statuses and set(statuses) == {"1"}, done.stderr[-3000:]
    assert lines and set(lines) <= {"deconv: error: [Errno 28] No space left on device",
                                    "deconv: error: rank 1: [Errno 28] No space left on device"}, done.stderr[-3000:]
    assert not (tmp_path / "out" / ".top9.lock").exists()


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(tiny, reference, images, tmp_path,
                                                                       run_python):
    """Another process holds the folder: refused, naming it; once that process is killed, its lock is stale."""
    out = tmp_path / "out"
    out.mkdir()
    debris = out / ".top9.json.0badcafe.tmp"  # as if the first run were writing its results
    debris.write_bytes(b"half written")
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from deconvnet.dataset.folderlock import acquire
        acquire({str(out)!r})
        print("locked", flush=True)
        time.sleep(120)
    """))
    holder = run_python(script, background=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        with pytest.raises(DeconvError, match=f"is in use by process {holder.pid} on {socket.gethostname()}") as raised:
            top9(images[0], out, model=tiny.model(), **SETTINGS)
        assert "choose another output folder" in str(raised.value) and str(out / ".top9.lock") in str(raised.value)
        assert debris.exists(), "the refused run deleted the other run's temporary file"
    finally:
        holder.kill()  # SIGKILL: its lock stays behind, stale
        holder.communicate(timeout=60)
    assert (out / ".top9.lock").exists()
    top9(images[0], out, model=tiny.model(), render=False, **SETTINGS)
    assert _results(out) == reference[2] and not (out / ".top9.lock").exists() and not debris.exists()


def test_a_stale_lock_from_a_dead_process_is_taken_over(tiny, reference, images, tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # that process has exited and been reaped
    (tmp_path / ".top9.lock").write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": "?"}))
    top9(images[0], tmp_path, model=tiny.model(), render=False, **SETTINGS)
    assert _results(tmp_path) == reference[2] and not (tmp_path / ".top9.lock").exists()


def _sheets(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p).convert("RGB"))
            for p in sorted(out.glob("*/*.png"))}


def test_several_modes_scan_once_and_write_what_each_single_mode_run_writes(tiny, reference, images, tmp_path):
    batches: list[int] = []
    alone: list[int] = []
    both = top9(images[0], tmp_path / "both", model=tiny.model(), mode=["deconvnet", "guided"],
                on_batch=batches.append, **SETTINGS)
    guided = top9(images[0], tmp_path / "guided", model=tiny.model(), mode="guided", on_batch=alone.append,
                  **SETTINGS)
    single = {"deconvnet": reference[0], "guided": tmp_path / "guided"}
    assert batches == alone == list(range(len(alone))) and alone  # one scan for both modes
    assert both.results_paths == [tmp_path / "both" / mode / "top9.json" for mode in ("deconvnet", "guided")]
    assert (both.rendered, both.reused) == (2 * reference[1].rendered, 0)
    for mode, out in single.items():
        assert json.loads((tmp_path / "both" / mode / "top9.json").read_text()) == _results(out)
        mine, theirs = _sheets(tmp_path / "both" / mode), _sheets(out)
        assert sorted(mine) == sorted(theirs) and len(mine) == 10 + 2  # 10 channel sheets, 2 mosaics
        for name in theirs:
            np.testing.assert_array_equal(mine[name], theirs[name], err_msg=f"{mode}/{name}")
        assert (tmp_path / "both" / mode / "index.html").is_file()
    deconvnet_sheets, guided_sheets = _sheets(reference[0]), _sheets(guided.out_dir)
    assert any(not np.array_equal(deconvnet_sheets[n], guided_sheets[n]) for n in deconvnet_sheets)  # rules differ
    assert not (tmp_path / "both" / "top9.json").exists()
    _no_debris(tmp_path / "both")
