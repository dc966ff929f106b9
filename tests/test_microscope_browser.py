"""The microscope's site in a real headless browser (Chromium through Playwright), opened from file://.

Skips when Playwright or Chromium is missing, except under CI (env CI set), where it fails:
.ci/run installs Debian's chromium so these checks always run there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deconvnet.tasks.microscope import microscope
from top9_tiny import make_images, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:skipped .*:UserWarning")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Debian's chromium)")
    pytest.skip(f"{reason}: install it (apt-get install chromium; pip install playwright) to run the browser tests")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed")
    executable = _chromium()
    if executable is None:
        _unavailable("no Chromium found at /usr/bin/chromium or on PATH")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_images(root)
    out = tmp_path_factory.mktemp("site") / "site"
    microscope(root, out, layers="all", modes=["deconvnet", "guided"], k=4, model=tiny_model(head=True),
               batch_size=4, workers=0, progress=False)
    return out


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.problems = []
    page.on("console", lambda message: message.type in ("error", "warning") and page.problems.append(message.text))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    # A load cut short by leaving the page (net::ERR_ABORTED) is no error; a missing file is.
    page.on("requestfailed", lambda request: "ERR_ABORTED" not in (request.failure or "")
            and page.problems.append(f"failed to load {request.url}: {request.failure}"))
    yield page
    assert page.problems == [], "the browser reported errors"
    page.close()


def _url(path: Path) -> str:
    return path.resolve().as_uri()


def test_the_index_lists_every_layer_with_loaded_mosaics(site, page):
    page.goto(_url(site / "index.html"))
    page.wait_for_load_state("load")
    assert page.locator("table.layers tbody tr").count() == 3
    assert page.eval_on_selector_all("img.mosaic", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)") == [
        True] * 3
    page.click("text=conv2_1")
    page.wait_for_url("**/conv2_1/index.html")


def test_a_layer_page_lists_every_unit_sorts_and_filters(site, page):
    page.goto(_url(site / "conv2_1" / "index.html"))
    tiles = page.locator("#units a.tile")
    assert tiles.count() == 6
    assert page.evaluate("""() => { const i = new Image(); i.src = 'tiles.deconvnet.jpg';
        return new Promise(done => { i.onload = () => done(i.naturalWidth); i.onerror = () => done(0); }); }""") > 0
    page.select_option("#sort", "peak")
    peaks = [float(p) for p in page.eval_on_selector_all("#units a.tile", "ts => ts.map(t => t.dataset.peak)")]
    assert peaks == sorted(peaks, reverse=True)
    page.select_option("#sort", "channel")
    assert page.eval_on_selector_all("#units a.tile", "ts => ts.map(t => +t.dataset.channel)") == list(range(6))
    page.check('input[name="mode"][value="guided"]')  # the other mode's sprite (a missing one would be reported)
    sprite = page.eval_on_selector("#units a.tile i", "i => getComputedStyle(i).backgroundImage")
    assert sprite.endswith('/conv2_1/tiles.guided.jpg")')
    page.wait_for_load_state("networkidle")
    page.goto(_url(site / "logits" / "index.html"))
    dead = page.locator("#units a.tile.dead").count()
    assert 0 < dead < 5  # the tiny head has dead units: the filter hides exactly them
    page.check("#hide-dead")
    assert page.locator("#units a.tile:visible").count() == 5 - dead


def test_a_unit_page_shows_all_its_images(site, page):
    page.goto(_url(site / "conv2_1" / "3.html"))
    page.wait_for_load_state("load")
    loaded = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert len(loaded) == 4 * 3 and all(loaded)  # k entries: two modes and the patch each
    assert page.locator("svg.histogram rect").count() > 0


def test_keyboard_navigation(site, page):
    page.goto(_url(site / "conv2_1" / "3.html"))
    page.keyboard.press("ArrowRight")
    page.wait_for_url("**/conv2_1/4.html")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/conv2_1/3.html")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/conv2_1/2.html")
    page.keyboard.press("u")
    page.wait_for_url("**/conv2_1/index.html")
    page.keyboard.press("u")
    page.wait_for_url("**/site/index.html")


def test_the_jump_box_takes_names_and_aliases(site, page):
    page.goto(_url(site / "index.html"))
    page.fill("#jump input", "conv2_1/5")
    page.press("#jump input", "Enter")
    page.wait_for_url("**/conv2_1/5.html")
    page.fill("#jump input", "features.0/1")  # the module name of conv1_1
    page.press("#jump input", "Enter")
    page.wait_for_url("**/conv1_1/1.html")
    page.fill("#jump input", "logits")
    page.press("#jump input", "Enter")
    page.wait_for_url("**/logits/index.html")
    page.fill("#jump input", "conv9_9/1")  # unknown: a message, and the page stays
    page.press("#jump input", "Enter")
    assert "unknown layer conv9_9" in page.inner_text("#jump-error")
    assert page.url.endswith("/logits/index.html")


def test_a_512_unit_layer_page_loads_within_a_second(tmp_path, page):
    import numpy as np
    from PIL import Image

    from deconvnet.dataset.results import Entry
    from deconvnet.tasks.microscope import site as site_module
    from deconvnet.tasks.microscope import thumbnails

    rng = np.random.default_rng(0)
    units = []
    for channel in range(512):
        peak = float(rng.normal())
        units.append(site_module.UnitInfo(channel, [Entry(f"{channel}.jpg", (1, 2), peak)],
                                          {"start": 0.0, "width": 1.0, "counts": [3]}, peak, peak <= 0, None))
    layer = site_module.LayerInfo("features.28", "conv5_3", "conv5_3", "Conv2d", "512x14x14", "196x196", units)
    site_module.write_site(tmp_path, model="m", identity="0" * 64, transform={}, images=3, images_root="", k=1,
                           modes=["deconvnet"], layers=[layer], labelled=False)
    rows = -(-512 // thumbnails.TILE_COLUMNS)
    sprite = rng.integers(0, 256, (rows * thumbnails.TILE, thumbnails.TILE_COLUMNS * 2 * thumbnails.TILE, 3))
    Image.fromarray(sprite.astype(np.uint8)).save(tmp_path / "conv5_3" / "tiles.deconvnet.jpg", quality=85)
    page.goto(_url(tmp_path / "conv5_3" / "index.html"))
    page.wait_for_load_state("load")
    assert page.locator("#units a.tile").count() == 512
    took = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
    print(f"512-unit layer page: {took:.0f} ms")
    assert 0 < took < 1000, f"the layer page took {took:.0f} ms to load"
