"""deconv serve's feature visualizations: made once per unit and settings, then read from the disk cache; the
page shows the progress, then the picture, after a click."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

# First: without the web extra it skips this module as its own (and fails in CI, which must have it).
import test_serve  # isort: skip
from test_serve import running  # isort: skip

import httpx  # noqa: E402

import deconvnet.serve.featurevis as fv_module  # noqa: E402
from deconvnet import feature_visualization  # noqa: E402
from deconvnet.serve.explorer import Explorer  # noqa: E402
from deconvnet.serve.featurevis import FeaturevisJobs, default_cache  # noqa: E402
from deconvnet.serve.server import App  # noqa: E402
from deconvnet.tasks.microscope.featurevis import FeaturevisSettings  # noqa: E402
from top9_tiny import make_images, tiny_model  # noqa: E402

SETTINGS = FeaturevisSettings(steps=3, size=32)
browser = test_serve.browser  # the fixture: Debian's chromium under Playwright


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_images(root)
    return root


@pytest.fixture
def counted(monkeypatch):
    """The optimizations the server starts, each slowed a little so that its progress can be seen."""
    calls = []
    real = fv_module.feature_visualization

    def optimize(model, layer, channels, **options):
        calls.append((layer, list(channels)))
        step = options.pop("on_step")

        def slowly(done, steps):
            time.sleep(0.3)
            step(done, steps)
        return real(model, layer, channels, on_step=slowly, **options)

    monkeypatch.setattr(fv_module, "feature_visualization", optimize)
    return calls


def _app(photos, cache) -> App:
    loaded = tiny_model(head=True)
    return App(Explorer(loaded, images=photos), featurevis=FeaturevisJobs(loaded, cache, SETTINGS))


def _finished(client: httpx.Client, layer: str, channel: int) -> tuple[dict, list[dict]]:
    seen = []
    for _ in range(200):
        answer = client.get("/api/featurevis", params={"layer": layer, "channel": channel})
        assert answer.status_code in (200, 202), answer.text
        seen.append(answer.json())
        if answer.status_code == 200:
            return seen[-1], seen[:-1]
        time.sleep(0.05)
    raise AssertionError("the feature visualization did not finish")


def test_a_unit_is_optimized_once_then_read_from_the_cache(photos, tmp_path, counted):
    cache = tmp_path / "cache"
    with running(_app(photos, cache)) as url, httpx.Client(base_url=url, timeout=30) as client:
        done, progress = _finished(client, "conv2_1", 2)
        assert progress and progress[0]["state"] == "running" and all(0 <= p["progress"] <= 1 for p in progress)
        assert "3 steps, 32 px, seed 0" in done["caption"]
        shown = np.asarray(Image.open(io.BytesIO(client.get(done["url"]).content)).convert("RGB"))
        again, waited = _finished(client, "features.3", 2)  # the same unit by its other name: from the cache
        assert waited == [] and counted == [("features.3", [2])]
        bad = client.get("/api/featurevis", params={"layer": "conv2_1", "channel": 6})
        assert bad.status_code == 400 and "valid 0-5" in bad.json()["error"]
        assert client.get("/api/featurevis", params={"layer": "conv9", "channel": 0}).status_code == 400
    expected = feature_visualization(tiny_model(head=True), "features.3", [2], steps=3, size=32).pictures()[0]
    assert np.array_equal(shown, expected)  # the optimization itself, run here independently
    (kept,) = cache.rglob("*.png")
    assert kept.name == "2.channel-32px-3steps-seed0.png" and kept.parent.name == "features.3"
    with running(_app(photos, cache)) as url, httpx.Client(base_url=url, timeout=30) as client:  # the next server
        _, waited = _finished(client, "conv2_1", 2)
        assert waited == [] and counted.count(("features.3", [2])) == 1  # (the bad channel was tried, and failed)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_the_default_cache_is_beside_the_site_or_in_the_users_cache(tmp_path, monkeypatch):
    assert default_cache(tmp_path / "site") == tmp_path / "site" / "featurevis-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache(None) == tmp_path / "xdg" / "deconvnet" / "featurevis"


def test_the_page_shows_the_progress_then_the_picture_after_a_click(photos, tmp_path, counted, browser):
    with running(_app(photos, tmp_path / "cache")) as url:
        page = browser.new_page(base_url=url)
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto("/?layer=conv2_1")
        page.wait_for_selector("#unit[data-shown]")
        page.locator("#grid .tile[data-channel='4']").click()
        page.wait_for_function("() => document.getElementById('featurevis').dataset.unit === 'features.3/4'")
        page.wait_for_selector("#featurevis-progress")  # while it runs
        page.wait_for_selector("#featurevis-image", timeout=30_000)
        size = page.eval_on_selector("#featurevis-image", "img => img.complete && img.naturalWidth")
        page.close()
    assert size == 32 and problems == []
    assert ("features.3", [4]) in counted
