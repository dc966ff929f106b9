"""deconv microscope --featurevis on the tiny net: the pictures on the unit pages and the layer grid against
feature_visualization run on each channel alone, and an interrupted build resumed against an uninterrupted one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deconvnet import feature_visualization
from deconvnet.cli import main
from deconvnet.tasks.microscope import featurevis as fv_module
from deconvnet.tasks.microscope import microscope
from top9_tiny import make_images, tiny_model

FV = {"steps": 3, "size": 32, "batch": 4}  # conv2_1's 6 channels: a batch of 4, then one of 2
BUILD = dict(layers=["conv1_1", "conv2_1"], k=3, batch_size=4, workers=0, progress=False)
pytestmark = pytest.mark.filterwarnings("ignore:skipped .*:UserWarning")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_images(root)
    return root


@pytest.fixture(scope="module")
def site(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    summary = microscope(photos, out, model=tiny_model(), featurevis=FV, **BUILD)
    return out, summary


def _pictures(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.featurevis.jpg"))}


def test_every_unit_page_and_grid_shows_its_own_feature_visualization(site):
    out, summary = site
    assert summary.optimized == 4 + 6
    model = tiny_model()
    for layer, folder, channels in (("features.0", "conv1_1", 4), ("features.3", "conv2_1", 6)):
        grid = (out / folder / "index.html").read_text(encoding="utf-8")
        tiles = re.findall(r'<a class="tile[^"]*" href="(\d+)\.html".*?</a>', grid, re.S)
        shown = re.findall(r'<img class="featurevis" src="img/(\d+)\.featurevis\.jpg"', grid)
        assert tiles == shown == [str(c) for c in range(channels)]
        alone = feature_visualization(model, layer, list(range(channels)), steps=3, size=32)  # independent run
        for channel in range(channels):
            page = (out / folder / f"{channel}.html").read_text(encoding="utf-8")
            assert f'<img src="img/{channel}.featurevis.jpg"' in page and "3 steps, 32 px, seed 0" in page
            reached = float(re.search(r'it reaches <span class="value">([^<]+)</span>', page).group(1))
            assert reached == pytest.approx(float(alone.activations[channel]), rel=1e-3, abs=1e-3)
            with Image.open(out / folder / "img" / f"{channel}.featurevis.jpg") as picture:
                got = np.asarray(picture.convert("RGB"), dtype=np.float64)
            difference = [np.abs(got - p.astype(np.float64)).mean() for p in alone.pictures()]
            assert got.shape == (32, 32, 3) and int(np.argmin(difference)) == channel and difference[channel] < 4


def test_an_interrupted_build_redoes_only_the_cut_batch_and_ends_with_the_same_pictures(site, photos, tmp_path,
                                                                                         monkeypatch):
    reference, _ = site
    out = tmp_path / "site"
    calls: list[tuple[str, list[int]]] = []
    writes = []
    real_optimize, real_save = fv_module.feature_visualization, fv_module.save_image_atomic

    def optimize(model, layer, channels, **options):
        calls.append((layer, list(channels)))
        return real_optimize(model, layer, channels, **options)

    def save(path, image, **options):
        writes.append(path)
        if len(writes) == 4 + 4 + 2:  # conv1_1's batch, conv2_1's first, one image of the second written
            raise RuntimeError("killed")
        return real_save(path, image, **options)

    monkeypatch.setattr(fv_module, "feature_visualization", optimize)
    monkeypatch.setattr(fv_module, "save_image_atomic", save)
    with pytest.raises(RuntimeError, match="killed"):
        microscope(photos, out, model=tiny_model(), featurevis=FV, **BUILD)
    assert calls == [("features.0", [0, 1, 2, 3]), ("features.3", [0, 1, 2, 3]), ("features.3", [4, 5])]
    assert (out / "conv2_1" / "img" / "4.featurevis.jpg").exists()  # written, but its batch is not done
    calls.clear()
    summary = microscope(photos, out, model=tiny_model(), featurevis=FV, **BUILD)
    assert calls == [("features.3", [4, 5])] and summary.optimized == 2
    assert _pictures(out) == _pictures(reference) and len(_pictures(out)) == 10
    for page in ("conv2_1/index.html", "conv2_1/5.html", "data/featurevis.json"):
        assert (out / page).read_bytes() == (reference / page).read_bytes()
    calls.clear()
    again = microscope(photos, out, model=tiny_model(), featurevis=FV, **BUILD)  # nothing left to do
    plain = microscope(photos, out, model=tiny_model(), **BUILD)  # without --featurevis: the pictures stay
    assert calls == [] and again.optimized == plain.optimized == 0
    assert 'class="featurevis"' in (out / "conv1_1" / "2.html").read_text(encoding="utf-8")


def test_other_featurevis_settings_make_every_picture_again(site, photos, tmp_path):
    out = tmp_path / "site"
    microscope(photos, out, model=tiny_model(), featurevis=FV, **{**BUILD, "layers": ["conv1_1"]})
    before = _pictures(out)
    summary = microscope(photos, out, model=tiny_model(), featurevis={**FV, "seed": 1},
                         **{**BUILD, "layers": ["conv1_1"]})
    after = _pictures(out)
    assert summary.optimized == 4 and before.keys() == after.keys()
    assert all(before[name] != after[name] for name in before)
    assert "seed 1" in (out / "conv1_1" / "0.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("arguments, message", [
    (["--featurevis-steps", "4"], "--featurevis-steps needs --featurevis"),
    (["--featurevis", "--featurevis-size", "0"], "--featurevis-size must be a whole number of at least 1"),
])
def test_the_command_refuses_featurevis_options_in_one_line(capsys, photos, tmp_path, arguments, message):
    try:
        status = main(["microscope", str(photos), "-o", str(tmp_path / "site"), *arguments])
    except SystemExit as exit:  # argparse's refusals
        status = exit.code
    error = capsys.readouterr().err
    assert status == 2 and message in error and error.count("\n") == 1
    assert not (tmp_path / "site").exists()
