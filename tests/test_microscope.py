"""deconv microscope on a tiny integer-weighted CNN: every page's numbers against a brute-force
top-k, incremental and interrupted builds against one uninterrupted build, the histograms."""

from __future__ import annotations

import json
import os
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deconvnet.cli import main
from deconvnet.dataset.accumulators import BINS, Histograms
from deconvnet.errors import DeconvError
from deconvnet.tasks.microscope import microscope
from tolerance import assert_same_sums
from top9_tiny import TRANSFORM, make_images, tiny_model

K = 4
MODES = ["deconvnet", "guided"]
# name -> (folder, the part of the tiny net that computes it)
LAYERS = {"features.0": "conv1_1", "features.3": "conv2_1", "head": "logits"}
SETTINGS = dict(k=K, batch_size=3, workers=0, progress=False)
pytestmark = pytest.mark.filterwarnings("ignore:skipped .*:UserWarning")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    paths = make_images(root)
    labels = tmp_path_factory.mktemp("labels") / "labels.tsv"
    # Two labels by index parity, and one image left unlabelled.
    lines = ["file\tlabel"] + [f"{p.relative_to(root).as_posix()}\t{'even' if i % 2 == 0 else 'odd'}"
                               for i, p in enumerate(paths) if p.name != "dup_b.png"]
    labels.write_text("\n".join(lines) + "\n")
    return root, paths, labels


@pytest.fixture(scope="module")
def site(images, tmp_path_factory):
    """An uninterrupted build of every layer in both modes."""
    root, _, labels = images
    out = tmp_path_factory.mktemp("site") / "site"
    summary = microscope(root, out, layers="all", modes=MODES, labels=labels, model=tiny_model(head=True), **SETTINGS)
    return out, summary


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _maxima(paths: list[Path]) -> dict[str, np.ndarray]:
    """Each layer's full output per image, straight from the model: {layer: (N, C, ...)}."""
    net = tiny_model(head=True).model
    outputs: dict[str, list] = {name: [] for name in LAYERS}
    with torch.no_grad():
        for path in paths:
            x = TRANSFORM(Image.open(path).convert("RGB"))[None]
            conv1 = net.features[0](x)
            conv2 = net.features[3](net.features[2](torch.relu(conv1)))
            head = net.head(torch.flatten(torch.relu(conv2), 1))
            for name, value in zip(LAYERS, (conv1, conv2, head)):
                outputs[name].append(value[0].numpy())
    return {name: np.stack(values) for name, values in outputs.items()}


def brute_force(paths: list[Path], root: Path, labels: dict[str, str]) -> dict[str, dict[str, list[dict]]]:
    """Top-k per channel by a plain sort of every image's first maximum (ties: earlier image first)."""
    tables = {}
    for name, maps in _maxima(paths).items():
        table = {}
        for channel in range(maps.shape[1]):
            scored = []
            for index, path in enumerate(paths):
                plane = maps[index, channel]
                where = int(np.argmax(plane.ravel()))
                y, x = divmod(where, plane.shape[-1]) if plane.ndim == 2 else (None, None)
                value = float(plane.ravel()[where])
                image = path.relative_to(root).as_posix()
                scored.append((-value, index, {"image": image, "y": y, "x": x, "value": value,
                                               "label": labels.get(image)}))
            table[str(channel)] = [entry for _, _, entry in sorted(scored, key=lambda s: s[:2])[:K]]
        tables[name] = table
    return tables


def _labels(path: Path) -> dict[str, str]:
    return dict(line.split("\t") for line in path.read_text().splitlines()[1:])


def _unit_entries(page: str) -> list[dict]:
    """image, label, position and value of each entry, as the unit page shows them."""
    found = []
    for caption in re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S):
        image = unescape(re.search(r'class="image">(.*?)</span>', caption).group(1))
        label = re.search(r'class="label">(.*?)</span>', caption)
        where = re.search(r'class="where">\((\d+), (\d+)\)</span>', caption)
        value = float(re.search(r'class="value">(.*?)</span>', caption).group(1))
        found.append({"image": image, "label": unescape(label.group(1)) if label else None,
                      "y": int(where.group(1)) if where else None, "x": int(where.group(2)) if where else None,
                      "value": value})
    return found


def test_every_page_matches_a_brute_force_top_k(site, images):
    out, summary = site
    root, paths, labels_file = images
    labels = _labels(labels_file)
    expected = brute_force(paths, root, labels)
    results = json.loads((out / "data" / "top9.json").read_text())
    assert results["images"] == len(paths) == summary.images
    assert results["modes"] == MODES and results["k"] == K
    index = (out / "index.html").read_text()
    for name, folder in LAYERS.items():
        assert results["layers"][name] == expected[name]
        layer_page = (out / folder / "index.html").read_text()
        tiles = re.findall(r'<a class="tile( dead)?" href="(\d+)\.html" data-channel="(\d+)" data-peak="([^"]*)" '
                           r'data-selectivity="([^"]*)"', layer_page)
        assert [int(t[2]) for t in tiles] == list(range(len(expected[name])))  # every unit, in channel order
        dead_count = 0
        for dead, _, channel, peak, selectivity in tiles:
            entries = expected[name][channel]
            assert float(peak) == pytest.approx(entries[0]["value"], rel=1e-6)
            assert bool(dead) == (entries[0]["value"] <= 0)
            dead_count += bool(dead)
            top_labels = [e["label"] for e in entries]
            most = max(top_labels.count(label) for label in set(top_labels) if label is not None)
            assert float(selectivity) == pytest.approx(most / K)
            shown = _unit_entries((out / folder / f"{channel}.html").read_text())
            assert len(shown) == K
            for got, want in zip(shown, entries):
                assert (got["image"], got["label"], got["y"], got["x"]) == (
                    want["image"], want["label"], want["y"], want["x"])
                assert got["value"] == pytest.approx(want["value"], rel=1e-5, abs=1e-9)
        assert f"<td>{dead_count / len(tiles):.0%}</td>" in index


def test_histograms_count_every_image_in_its_bin(site, images):
    out, _ = site
    _, paths, _ = images
    results = json.loads((out / "data" / "top9.json").read_text())
    for name, maps in _maxima(paths).items():
        per_image = maps.reshape(maps.shape[0], maps.shape[1], -1).max(2)  # (N, C)
        for channel in range(maps.shape[1]):
            hist = results["histograms"][name][str(channel)]
            start, width, counts = hist["start"], hist["width"], hist["counts"]
            assert sum(counts) == len(paths) and len(counts) <= BINS
            assert width == 2.0 ** round(np.log2(width))  # a power of two
            bins = np.floor((per_image[:, channel].astype(np.float64) - start) / width).astype(int)
            assert np.bincount(bins, minlength=len(counts)).tolist() == counts
            page = (out / LAYERS[name] / f"{channel}.html").read_text()
            assert page.count("<rect ") == len(counts)


def test_histograms_do_not_depend_on_order_or_batching():
    values = torch.randn(6, 200, generator=torch.Generator().manual_seed(3)) * torch.tensor(
        [1e-3, 1, 10, 1e3, 0, 1])[:, None]
    values[5, :50] = float("nan")
    whole = Histograms.of(values)
    order = torch.randperm(200, generator=torch.Generator().manual_seed(4))
    pieces = Histograms.empty(6)
    for chunk in order.split(7):
        pieces = pieces.merged(Histograms.of(values[:, chunk]))
    assert torch.equal(pieces.counts, whole.counts) and torch.equal(pieces.exponent, whole.exponent)
    assert whole.counts.sum(1).tolist() == [200, 200, 200, 200, 200, 150]
    for channel in range(6):  # the narrowest power-of-two bins that span the values
        entry = whole.entry(channel)
        finite = values[channel][torch.isfinite(values[channel])].double()
        span = (finite.max() / entry["width"]).floor() - (finite.min() / entry["width"]).floor()
        assert span < BINS
        if channel != 4:  # all-equal values sit in one bin of the narrowest width
            assert (finite.max() / (entry["width"] / 2)).floor() - (finite.min() / (entry["width"] / 2)).floor() >= BINS


def test_incremental_build_computes_only_what_is_new_and_equals_one_build(site, images, tmp_path):
    reference, _ = site
    root, _, labels = images
    out = tmp_path / "site"
    first = microscope(root, out, layers=["conv1_1"], modes=["deconvnet"], labels=labels, model=tiny_model(head=True),
                       **SETTINGS)
    assert first.scanned == ["features.0"] and first.projected == 4
    second = microscope(root, out, layers="all", modes=MODES, labels=labels, model=tiny_model(head=True), **SETTINGS)
    assert second.scanned == ["features.3", "head"]
    assert second.projected == 4 + 2 * (6 + 5)  # conv1_1 in guided mode, the two new layers in both
    again = microscope(root, out, layers=["logits"], modes=["guided"], labels=labels, model=tiny_model(head=True),
                       **SETTINGS)
    assert again.scanned == [] and again.projected == 0 and again.layers == list(LAYERS)
    assert _tree(out) == _tree(reference)


def test_an_interrupted_build_resumes_to_the_same_site(site, images, tmp_path):
    reference, _ = site
    root, _, labels = images
    out = tmp_path / "site"

    def stop_at(count):
        calls = []

        def hook(*args):
            calls.append(args)
            if len(calls) == count:
                raise KeyboardInterrupt
        return hook

    build = dict(layers="all", modes=MODES, labels=labels, model=tiny_model(head=True), **SETTINGS)
    with pytest.raises(KeyboardInterrupt):
        microscope(root, out, on_batch=stop_at(2), **build)
    assert (out / "data" / ".scan-checkpoint-rank0.pt").exists()
    with pytest.raises(KeyboardInterrupt):
        microscope(root, out, on_unit=stop_at(7), **build)
    assert not (out / "data" / ".scan-checkpoint-rank0.pt").exists()
    (out / "conv1_1" / "img" / ".3.guided.jpg.0123abcd.tmp").write_bytes(b"left by a killed run")
    (out / "data" / ".conv2_1.json.0123abcd.tmp").write_bytes(b"left by a killed run")
    summary = microscope(root, out, **build)
    assert summary.scanned == [] and summary.projected == 2 * (4 + 6 + 5) - 7
    assert not list(out.rglob("*.tmp"))
    assert _tree(out) == _tree(reference)


def test_other_settings_are_refused_and_restart_rebuilds(site, images, tmp_path):
    root, _, labels = images
    out = tmp_path / "site"
    microscope(root, out, layers=["conv1_1"], labels=labels, model=tiny_model(head=True), **SETTINGS)
    with pytest.raises(DeconvError, match="other settings .*different k.*--restart"):
        microscope(root, out, layers=["conv1_1"], labels=labels, model=tiny_model(head=True),
                   **{**SETTINGS, "k": 3})
    summary = microscope(root, out, layers=["conv1_1"], labels=labels, model=tiny_model(head=True), restart=True,
                         **{**SETTINGS, "k": 3})
    assert summary.scanned == ["features.0"]
    assert len(_unit_entries((out / "conv1_1" / "0.html").read_text())) == 3


def test_labels_from_sub_folders_and_the_command_line(tmp_path, capsys):
    for label, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), tuple(max(c - 40 * i, 0) for c in colour)).save(
                tmp_path / "photos" / label / f"{i}.png")
    status = main(["microscope", str(tmp_path / "photos"), "-o", str(tmp_path / "site"), "--layers", "conv1_1",
                   "--k", "2", "--weights", "random", "--workers", "0", "--modes", "deconvnet,guided"])
    assert status == 0, capsys.readouterr().err
    assert "1 layer over 6 images: scanned 1 layer, projected 128 units" in capsys.readouterr().out
    results = json.loads((tmp_path / "site" / "data" / "top9.json").read_text())
    assert results["labels"] == {f"{label}/{i}.png": label for label in ("blue", "red") for i in range(3)}
    assert all(entry["label"] == entry["image"].split("/")[0]
               for entries in results["layers"]["features.0"].values() for entry in entries)


def test_activations_of_a_layer_before_an_in_place_relu_are_not_rectified():
    """conv1_1 requested with a deeper layer: its output must be copied before relu1_1 overwrites it."""
    from deconvnet.engine import Deconvnet

    net = tiny_model(head=True).model
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 255
    with torch.no_grad():
        expected = net.features[0](x)
    assert (expected < 0).any()
    with Deconvnet(net) as dn:
        got = dn.activations(x, ["features.0", "head"])["features.0"]
    # the engine's forward (channels-last, compiled) and the eager module sum in different orders
    conv = net.features[0]
    with torch.no_grad():
        magnitudes = torch.nn.functional.conv2d(x.abs(), conv.weight.abs(), conv.bias.abs(), conv.stride, conv.padding)
    assert_same_sums(got, expected, terms=conv.weight[0].numel() + 1, magnitude=float(magnitudes.max()))


def test_labels_from_a_tsv_with_a_header(tmp_path):
    from deconvnet.tasks.microscope.labels import read_labels

    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("file\twnid\tclass_index\tclass_name\nn01_tench.jpg\tn01\t0\ttench\nb.jpg\tn02\t1\tgoldfish\n")
    assert read_labels(["n01_tench.jpg", "sub/b.jpg", "c.jpg"], manifest, True) == {
        "n01_tench.jpg": "tench", "sub/b.jpg": "goldfish"}
    plain = tmp_path / "plain.tsv"
    plain.write_text("a.jpg\tcat\n\n# a comment\nb.jpg\tdog\n")
    assert read_labels(["a.jpg", "b.jpg"], plain, True) == {"a.jpg": "cat", "b.jpg": "dog"}
    plain.write_text("a.jpg\n")
    with pytest.raises(DeconvError, match="line 1: expected 'file<TAB>label'"):
        read_labels(["a.jpg"], plain, True)



def test_a_folder_held_by_another_build_is_refused(images, tmp_path):
    from deconvnet.dataset.folderlock import acquire

    root, _, _ = images
    out = tmp_path / "site"
    out.mkdir()
    held = acquire(out)  # as another build's process would
    with pytest.raises(DeconvError, match=f"is in use by process {os.getpid()}"):
        microscope(root, out, layers=["features.0"], model=tiny_model(head=True), **SETTINGS)
    assert held.exists() and not (out / "index.html").exists()


def test_the_callers_model_is_not_moved_to_another_device(images, tmp_path, monkeypatch):
    import deconvnet.dataset.runner as runner_module

    root, _, _ = images
    loaded = tiny_model(head=True)
    moved: list[torch.nn.Module] = []
    module_to = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to",
                        lambda self, *a, **k: (moved.append(self), module_to(self, *a, **k))[1])
    monkeypatch.setattr(runner_module, "pick_device", lambda device: torch.device("cpu", 0))  # "another" device
    microscope(root, tmp_path / "site", layers=["features.0"], model=loaded, **SETTINGS)
    assert moved and all(module is not loaded.model for module in moved), "the caller's model was moved"


def test_channels_build_a_first_site_that_a_later_build_extends(site, images, tmp_path):
    reference, _ = site
    root, _, labels = images
    out = tmp_path / "site"
    build = dict(modes=MODES, labels=labels, model=tiny_model(head=True), **SETTINGS)
    first = microscope(root, out, layers=["conv1_1", "logits"], channels=[1, 3], **build)
    assert first.scanned == ["features.0", "head"] and first.projected == 2 * 2 * 2
    assert [int(c) for c in json.loads((out / "data" / "conv1_1.json").read_text())["channels"]] == [1, 3]
    assert sorted(p.stem for p in (out / "conv1_1").glob("[0-9]*.html")) == ["1", "3"]
    second = microscope(root, out, layers="all", **build)
    assert second.scanned == ["features.0", "features.3", "head"]  # the missing channels of the first two
    assert second.projected == 2 * ((4 - 2) + 6 + (5 - 2))
    assert _tree(out) == _tree(reference)


def _site_script(tmp_path: Path, name: str, root: Path, out: Path, labels: Path, kill_at: int | None = None) -> Path:
    """A build of every layer in both modes; with ``kill_at``, rank 1 SIGKILLs itself at that scan batch."""
    script = tmp_path / name
    script.write_text(f"""
import os, signal
from deconvnet.tasks.microscope import microscope
from top9_tiny import tiny_model

def killed(number):
    if {kill_at!r} is not None and os.environ["RANK"] == "1" and number == {kill_at!r}:
        os.kill(os.getpid(), signal.SIGKILL)

microscope({str(root)!r}, {str(out)!r}, layers="all", modes={MODES!r}, labels={str(labels)!r},
           model=tiny_model(head=True), on_batch=killed, **{SETTINGS!r})
""")
    return script


def test_torchrun_two_processes_build_the_same_site_as_one(site, images, tmp_path, torchrun):
    """Integer network: every value is exact, so the scan shards, the merged top-k and histograms, and the
    projections split between the processes give byte-identical files."""
    reference, summary = site
    root, _, labels = images
    out = tmp_path / "site"
    done = torchrun(_site_script(tmp_path, "ranks.py", root, out, labels), 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tree(out) == _tree(reference)
    assert not list(out.rglob(".scan-*")) and not (out / ".top9.lock").exists()


def test_a_killed_two_process_build_resumes_to_the_same_site(site, images, tmp_path, torchrun):
    reference, _ = site
    root, _, labels = images
    out = tmp_path / "site"
    killed = torchrun(_site_script(tmp_path, "killed.py", root, out, labels, kill_at=1), 2)
    assert killed.returncode != 0
    assert (out / "data" / ".scan-checkpoint-rank1.pt").is_file(), killed.stderr[-3000:]  # its first batch
    assert not (out / "data" / "top9.json").exists()
    done = torchrun(_site_script(tmp_path, "resumed.py", root, out, labels), 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tree(out) == _tree(reference)


def test_a_site_of_format_1_is_extended_without_a_rebuild(site, images, tmp_path):
    """Format 1 kept "channels" (None: all) among the settings and no per-layer channel lists."""
    import shutil

    reference, _ = site
    root, _, labels = images
    out = tmp_path / "site"
    shutil.copytree(reference, out)
    manifest = json.loads((out / "data" / "site.json").read_text())
    assert manifest["format"] == 2 and manifest["channels"]["head"] == [0, 1, 2, 3, 4]
    old = {key: value for key, value in manifest.items() if key not in ("format", "channels")}
    old["settings"] = {**old["settings"], "channels": None}
    (out / "data" / "site.json").write_text(json.dumps(old))
    summary = microscope(root, out, layers=["conv2_1"], modes=["guided"], labels=labels, model=tiny_model(head=True),
                         **SETTINGS)
    assert summary.scanned == [] and summary.projected == 0
    assert _tree(out) == _tree(reference)


def test_torchrun_a_failing_rank_stops_every_rank_with_its_error(images, tmp_path, torchrun):
    """Rank 1 fails while projecting: rank 0, waiting for it, stops with its error instead of hanging."""
    root, _, _ = images
    script = tmp_path / "failing.py"
    script.write_text(f"""
import functools, os, pathlib, sys
import deconvnet.dataset.runner as runner
import deconvnet.tasks.microscope as m
from deconvnet.cli import main
from top9_tiny import tiny_model
runner.load = lambda *args, **kwargs: tiny_model(head=True)

def breaks(layer, channel, mode):
    if os.environ["RANK"] == "1":
        raise PermissionError(f"cannot write the strip of {{layer}} channel {{channel}}")

m.microscope = functools.partial(m.microscope, on_unit=breaks)  # what the command calls
status = main(["microscope", {str(root)!r}, "-o", {str(tmp_path / 'site')!r}, "--layers", "conv1_1", "--k", "2",
               "--batch-size", "4", "--workers", "0"])
pathlib.Path({str(tmp_path)!r}, "status_" + os.environ["RANK"]).write_text(str(status))
sys.exit(status)
""")
    done = torchrun(script, 2, timeout=150)
    assert done.returncode != 0
    # torchrun ends the job when the first process exits: each process that got to report did so with
    # rank 1's error and exit status 2 (bad input: a permission), and at least one did.
    statuses = [path.read_text() for path in sorted(tmp_path.glob("status_*"))]
    lines = [line for line in done.stderr.splitlines() if line.startswith("deconv: error:")]
    assert statuses and set(statuses) == {"2"}, done.stderr[-3000:]
    assert lines and all(line.endswith("cannot write the strip of features.0 channel 1") for line in lines), lines
    assert not (tmp_path / "site" / ".top9.lock").exists()
