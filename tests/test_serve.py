"""``deconv serve``: the API against a real server on a free port, its safety, and the page in Chromium.

The model is the top-9 tests' integer-weighted tiny net (top9_tiny.py): with pixel values
0..255 every sum it computes, forward and back, is an integer below 2**24, so projections
are exact in float32 and the pictures served can be compared pixel for pixel.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

try:
    import httpx
    import starlette  # noqa: F401
except ImportError as missing:  # the extra is in .[test]: CI must have it
    if os.environ.get("CI"):
        raise ImportError(f"{missing}; CI installs .[test], which includes the web extra deconvnet[serve]") from None
    pytest.skip(f"{missing}: pip install -e '.[test]' to test deconv serve", allow_module_level=True)

from deconvnet.cli import serve as serve_command  # noqa: E402
from deconvnet.dataset.images import open_image  # noqa: E402
from deconvnet.dataset.imageset import expand  # noqa: E402
from deconvnet.dataset.runner import model_identity  # noqa: E402
from deconvnet.engine import Deconvnet, FeatureExtractor  # noqa: E402
from deconvnet.render import crop_with_padding, to_display  # noqa: E402
from deconvnet.serve.context import SiteContext  # noqa: E402
from deconvnet.serve.explorer import Explorer  # noqa: E402
from deconvnet.serve.server import App, make_server  # noqa: E402
from deconvnet.serve.worker import Busy, ModelWorker, Superseded  # noqa: E402
from deconvnet.tasks.microscope import microscope  # noqa: E402
from reference import autograd_projection  # noqa: E402
from top9_tiny import make_images, tiny_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:skipped .*:UserWarning")
REPO = Path(__file__).resolve().parent.parent
CAT = REPO / "assets" / "cat.jpg"


@contextmanager
def running(app: App):
    """The app on 127.0.0.1 on a free port, in a thread; stopped (and the app closed) on exit."""
    server = make_server(app, host="127.0.0.1", port=0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        listener.close()
        app.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    make_images(root)
    shutil.copy(CAT, root / "cat.jpg")
    secret = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    (root / "link-out.png").symlink_to(secret)  # a link leaving the folder: never served
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory, photos) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    microscope(photos, out, layers=["conv2_1"], modes=["deconvnet", "guided"], k=4, model=tiny_model(head=True),
               batch_size=4, workers=0, progress=False)
    return out


def _app(photos: Path, site: Path | None = None, **options) -> App:
    loaded = tiny_model(head=True)
    context = None if site is None else SiteContext(site, model=loaded.name, identity=model_identity(loaded))
    explorer = Explorer(loaded, site=context, images=photos, max_pixels=options.pop("max_pixels", None),
                        compare=options.pop("compare", None))
    return App(explorer, site=site, **options)


@pytest.fixture(scope="module")
def server(photos, site):
    with running(_app(photos, site)) as url:
        yield url


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, timeout=30) as http:
        yield http


def _upload(client, path: Path) -> str:
    answer = client.post("/api/images", content=path.read_bytes(), params={"name": path.name})
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def _picture(client, url: str) -> np.ndarray:
    answer = client.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(answer.content)))


# -- the computations ------------------------------------------------------------------------

def test_the_grid_has_every_channel_with_its_peak_and_map(client, photos):
    image = _upload(client, photos / "img_01.png")
    grid = client.get("/api/grid", params={"image": image, "layer": "conv2_1"}).json()
    loaded = tiny_model(head=True)
    x = loaded.transform(open_image(photos / "img_01.png"))[None]
    with FeatureExtractor(loaded.model) as features:
        activation = features.activations(x, ["features.3"])["features.3"][0]  # (6, 16, 16)
    assert grid["layer"] == "features.3" and [row["channel"] for row in grid["channels"]] == list(range(6))
    peaks = activation.reshape(6, -1).max(1).values
    for row in grid["channels"]:
        c = row["channel"]
        assert row["peak"] == float(peaks[c]) and activation[c, row["y"], row["x"]] == peaks[c]
        assert row["mean"] == pytest.approx(float(activation[c].mean()), rel=1e-6)
    assert grid["strongest"] == int(peaks.argmax())
    # The sprite: channel c's tile is its map scaled to its own peak, each value repeated over a square.
    sheet = _picture(client, grid["sprite"])
    tile_h, tile_w = grid["tile"]
    factor = tile_h // 16
    c = 4
    row, column = divmod(c, grid["columns"])
    tile = sheet[row * tile_h:(row + 1) * tile_h, column * tile_w:(column + 1) * tile_w]
    expected = np.floor(activation[c].clamp(min=0).numpy() / float(peaks[c]) * 255 + 0.5)
    assert peaks[c] > 0 and expected.std() > 0
    # v / peak is rounded in float32 there and here: a value on a .5 boundary may land one level apart.
    assert np.abs(tile[::factor, ::factor].astype(int) - expected).max() <= 1
    assert np.array_equal(tile, tile[::factor, ::factor].repeat(factor, 0).repeat(factor, 1))


@pytest.mark.parametrize("mode", ["deconvnet", "guided", "backprop"])
def test_the_projection_shown_is_project_units_rendered_as_visualize_does(client, photos, mode):
    image = _upload(client, CAT)
    unit = client.get("/api/unit", params={"image": image, "layer": "conv2_1", "channel": 2, "modes": mode}).json()
    loaded = tiny_model(head=True)
    x = loaded.transform(open_image(CAT))[None]
    with Deconvnet(loaded.model) as dn:
        projection = dn.project_units(x, "conv2_1", [(0, 2, None)], mode=mode, crop=False)
        box = dn.box("conv2_1", projection.units[0].position, (32, 32))
    assert unit["position"] == list(projection.units[0].position) and unit["value"] == projection.units[0].value
    assert unit["box"] == box._asdict()
    expected = to_display(crop_with_padding(loaded.transform.as_rgb(projection.maps[0]), tuple(box)), percentile=99.5)
    shown = _picture(client, unit["projections"][0]["url"])
    assert np.array_equal(shown, expected)  # integer arithmetic (see the module docstring): exact
    # ...and project_units is the rule's autograd gradient (an independent computation).
    grad, value, _ = autograd_projection(loaded.model, x, "features.3", 2, tuple(unit["position"]), mode)
    assert torch.equal(grad, projection.maps) and value == unit["value"]
    assert shown.std() > 0  # not blank
    picture = loaded.transform.to_uint8(x[0])
    assert np.array_equal(_picture(client, unit["patch"]), crop_with_padding(picture, tuple(box)))
    y, x_ = unit["position"]
    assert unit["title"] == f"tiny features.3 (conv2_1), channel 2 at (y={y}, x={x_})"


def test_a_clicked_position_and_the_default_rules(client, photos):
    image = _upload(client, CAT)
    unit = client.get("/api/unit", params={"image": image, "layer": "conv2_1", "channel": 1, "y": 3, "x": 9}).json()
    assert unit["position"] == [3, 9] and [p["mode"] for p in unit["projections"]] == ["deconvnet", "guided"]
    assert "guided backpropagation applies them" in unit["note"]
    figure = client.get("/api/figure.png", params={"image": image, "layer": "conv2_1", "channel": 1, "y": 3, "x": 9})
    assert figure.status_code == 200 and Image.open(io.BytesIO(figure.content)).width > 400  # visualize's figure


def test_the_site_context_places_this_image_among_the_sites_images(client, photos, site):
    image = _upload(client, photos / "img_05.png")
    unit = client.get("/api/unit", params={"image": image, "layer": "conv2_1", "channel": 3}).json()
    context = unit["context"]
    table = json.loads((site / "data" / "conv2_1.json").read_text())
    assert [e["image"] for e in context["entries"]] == [e["image"] for e in table["channels"]["3"]]
    assert client.get(context["strips"]["guided"]).status_code == 200
    assert client.get(context["patches"]).status_code == 200
    # Brute force: the channel's maximum over each of the site's images, against this image's peak.
    loaded = tiny_model(head=True)
    maxima = []
    with FeatureExtractor(loaded.model) as features:
        for path in expand(photos):
            try:
                x = loaded.transform(open_image(path))[None]
            except ValueError:
                continue  # the folder's broken files, which the site skipped too
            maxima.append(float(features.activations(x, ["features.3"])["features.3"][0, 3].max()))
    assert len(maxima) == context["images"]
    exact = sum(value < context["peak"] for value in maxima) / len(maxima)
    widest_bin = max(context["histogram"]["counts"]) / len(maxima)  # the histogram knows a value to its bin only
    assert abs(context["share_below"] - exact) <= widest_bin
    page = client.get(context["page"])
    assert page.status_code == 200 and 'href="/?layer=features.3&amp;channel=3"' in page.text


def test_a_second_checkpoint_is_compared_unit_by_unit(photos, tmp_path):
    other = tiny_model(head=True)
    with torch.no_grad():
        other.model.features[0].weight.add_(1)  # still integers: exact
    other.weights = "negated"
    with running(_app(photos, compare=other)) as url, httpx.Client(base_url=url, timeout=30) as http:
        image = _upload(http, CAT)
        query = {"image": image, "layer": "conv2_1", "channel": 0, "y": 5, "x": 5, "modes": "guided"}
        mine, theirs = (http.get("/api/unit", params={**query, "which": which}).json() for which in ("main", "compare"))
        assert theirs["weights"] == "negated" and mine["weights"] == "random"
        x = other.transform(open_image(CAT))[None]
        with Deconvnet(other.model) as dn:
            maps = dn.project_units(x, "conv2_1", [(0, 0, (5, 5))], mode="guided", crop=False).maps
            box = dn.box("conv2_1", (5, 5), (32, 32))
        expected = to_display(crop_with_padding(other.transform.as_rgb(maps[0]), tuple(box)), percentile=99.5)
        assert np.array_equal(_picture(http, theirs["projections"][0]["url"]), expected)
        assert not np.array_equal(_picture(http, mine["projections"][0]["url"]), expected)


# -- bad input and safety ------------------------------------------------------------------------

def test_bad_requests_get_the_clis_one_line_message_and_the_server_keeps_serving(client, photos):
    image = _upload(client, CAT)
    cases = [
        (client.post("/api/images", content=b"hello", params={"name": "notes.txt"}), 400,
         "cannot read image notes.txt: expected an image file"),
        (client.post("/api/images", content=CAT.read_bytes()[:3000], params={"name": "cut.jpg"}), 400,
         "cannot read image cut.jpg:"),
        (client.post("/api/images", content=b""), 400, "image file is empty"),
        (client.get("/api/grid", params={"image": image, "layer": "conv9"}), 400, "unknown layer 'conv9'"),
        (client.get("/api/unit", params={"image": image, "layer": "conv2_1", "channel": 6}), 400,
         "channel 6 is out of range for layer features.3: it has 6 channels (0..5)"),
        (client.get("/api/unit", params={"image": image, "layer": "conv2_1", "channel": 1, "y": 16, "x": 0}), 400,
         "position (16, 0) is outside layer features.3's 16x16 map"),
        (client.get("/api/unit", params={"image": image, "layer": "conv2_1", "channel": "x"}), 400,
         "expected an integer channel"),
        (client.get("/api/grid", params={"image": "nope", "layer": "conv2_1"}), 404, "unknown image 'nope'"),
        (client.post("/api/images", params={"photo": "../cat.jpg"}), 404, "no photo"),
    ]
    for answer, status, message in cases:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"].startswith(message) and "\n" not in answer.json()["error"]
    assert client.get("/api/model").status_code == 200


def test_multipart_uploads_work_too(client):
    answer = client.post("/api/images", files={"file": ("cat.jpg", CAT.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["name"] == "cat.jpg"


def test_uploads_are_limited_in_bytes_and_pixels(photos, monkeypatch):
    with running(_app(photos, max_upload_bytes=10_000, max_pixels=4000)) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        big = http.post("/api/images", content=CAT.read_bytes())  # 25 kB
        assert big.status_code == 413 and "over this server's limit of 10,000 bytes" in big.json()["error"]
        buffer = io.BytesIO()
        Image.new("RGB", (100, 50), "white").save(buffer, format="PNG")
        wide = http.post("/api/images", content=buffer.getvalue(), params={"name": "wide.png"})
        assert wide.status_code == 400 and "5,000 pixels" in wide.json()["error"]
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's guard: a 5,000-pixel "bomb" past 2x
        bomb = http.post("/api/images", content=buffer.getvalue(), params={"name": "bomb.png"})
        assert bomb.status_code == 400 and "decompression-bomb limit" in bomb.json()["error"]
        assert http.get("/api/model").status_code == 200


def _raw_get(url: str, path: str) -> int:
    """The status of GET ``path`` sent byte for byte (clients would normalise the dots away)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return int(connection.recv(100).split(b" ")[1])


@pytest.mark.parametrize("path", [
    "/photos/../test_serve.py", "/photos/%2e%2e/%2e%2e/etc/passwd", "/photos/..%2f..%2fetc%2fpasswd",
    "/photos/%252e%252e/cat.jpg", "/photos//etc/passwd", "/photos/%2Fetc%2Fpasswd", "/photos/link-out.png",
    "/photos/sub/../../secret.png", "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%5cserver.py",
    "/site/../data/site.json", "/site/%2e%2e/photos/cat.jpg", "/site/data/../../x", "/photos/cat.jpg%00.png",
    "/photos/not-an-image.txt",
])
def test_paths_out_of_the_served_folders_are_not_found(server, path):
    assert _raw_get(server, path) == 404


def test_the_served_folders_are_served(server):
    for path in ("/", "/static/app.js", "/static/style.css", "/photos/cat.jpg", "/photos/sub/img_00.png",
                 "/site/index.html", "/site/data/site.json"):
        assert _raw_get(server, path) == 200, path


def test_a_full_queue_is_refused_at_once_and_a_newer_request_supersedes():
    worker = ModelWorker(queue_size=2)
    gate = threading.Event()
    try:
        running_job = worker.submit(gate.wait)
        deadline = time.monotonic() + 10
        while worker.waiting and time.monotonic() < deadline:  # until the worker has taken it
            time.sleep(0.01)
        stale, fresh = worker.submit(lambda: "old", key="tab/grid"), worker.submit(lambda: "new", key="tab/grid")
        with pytest.raises(Busy):
            worker.submit(lambda: None)
        gate.set()
        assert running_job.result(timeout=5) is True and fresh.result(timeout=5) == "new"
        with pytest.raises(Superseded):
            stale.result(timeout=5)
    finally:
        gate.set()
        worker.close()


def _resident_mb() -> float:
    """This process's resident memory (the server runs in it), from /proc (0 where there is none)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return 0.0
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_a_flood_of_requests_is_answered_and_bounded(photos):
    app = _app(photos, queue_size=4)
    with running(app) as url:
        with httpx.Client(base_url=url, timeout=30) as http:
            image = _upload(http, CAT)
        gate = threading.Event()
        app.worker.submit(gate.wait)  # the model is busy: the queue fills, the rest must be refused at once
        threading.Timer(1.0, gate.set).start()

        def one_client(number: int) -> list[tuple[int, float]]:
            answers = []
            with httpx.Client(base_url=url, timeout=30) as http:
                for i in range(10):
                    start = time.monotonic()
                    path = "/api/grid" if i % 2 else "/api/unit"
                    answer = http.get(path, params={"image": image, "layer": "conv2_1", "channel": i % 6})
                    answers.append((answer.status_code, time.monotonic() - start))
            return answers

        resident = _resident_mb()
        with ThreadPoolExecutor(20) as pool:
            answers = [one for result in pool.map(one_client, range(20)) for one in result]
        grown = _resident_mb() - resident
        print(f"flood: resident memory {resident:.0f} MB before, grew by {grown:.0f} MB")
        assert grown < 300  # bounded: the queue, the kept inputs and pictures are all capped
        statuses = [status for status, _ in answers]
        assert len(answers) == 200 and set(statuses) <= {200, 429, 503}
        assert 429 in statuses and 200 in statuses and max(seconds for _, seconds in answers) < 30
        assert app.worker.waiting == 0
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/api/model").status_code == 200


# -- the command -----------------------------------------------------------------------------

def test_without_the_extra_the_command_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(serve_command, "find_spec", lambda name: None if name == "uvicorn" else object())
    from deconvnet.cli import main

    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and 'pip install "deconvnet[serve]"' in error


def test_the_command_prints_the_url_serves_and_stops_on_ctrl_c(run_python):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_python("-m", "deconvnet.cli", "serve", "--port", str(port), timeout=120)
    assert busy.returncode == 2 and busy.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    server = run_python("-m", "deconvnet.cli", "serve", "--model", "tiny-zfnet", "--weights", "random",
                        "--port", str(port), background=True)
    try:
        line = server.stdout.readline()
        assert f"at http://127.0.0.1:{port}/" in line
        assert httpx.get(f"http://127.0.0.1:{port}/api/model", timeout=30).json()["photos"] == [
            "astronaut.jpg", "cat.jpg", "coffee.jpg"]  # the shipped photos, not the README's figures
        server.send_signal(signal.SIGINT)
        _, error = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 130 and error.strip() == "deconv serve: stopped"


def test_importing_deconvnet_and_help_load_no_web_stack(run_python):
    code = ("import contextlib, io, sys, deconvnet\nfrom deconvnet.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'multipart', "
            "'httpx') or m.startswith('deconvnet.serve')))")
    done = run_python("-c", code, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stderr


# -- the page in a real browser --------------------------------------------------------------

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Debian's chromium)")
    pytest.skip(f"{reason}: install it (apt-get install chromium; pip install playwright) to run the browser tests")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed")
    executable = shutil.which("chromium")
    if executable is None:
        _unavailable("no chromium on PATH")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=server)
    context.grant_permissions(["camera"], origin=server)
    page = context.new_page()
    page.problems = []
    page.on("console", lambda message: message.type in ("error", "warning") and page.problems.append(message.text))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    yield page
    context.close()
    assert [problem for problem in page.problems if not page.allowed(problem)] == [], "the browser reported errors"


def _loaded(page, selector: str) -> list[bool]:
    """Per image under ``selector``: loaded and not blank (drawn on a canvas, its pixels vary)."""
    page.wait_for_function("selector => Array.from(document.querySelectorAll(selector)).every(i => i.complete)",
                           arg=selector)  # a loaded machine may still be fetching some
    return page.eval_on_selector_all(selector, """imgs => imgs.map(img => {
        if (!img.complete || !img.naturalWidth) return false;
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext("2d");
        context.drawImage(img, 0, 0);
        const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 4; i < data.length; i += 4) if (data[i] !== data[0] || data[i + 1] !== data[1]) return true;
        return false; })""")


def test_upload_grid_click_projections_context_and_keys(page):
    page.allowed = lambda problem: False
    page.goto("/?layer=conv2_1")
    page.wait_for_selector("#unit[data-shown]")  # the folder's first photo, shown at once
    page.set_input_files("#file", str(CAT))
    page.wait_for_function("() => document.getElementById('grid').dataset.shown >= 2 && "
                           "document.getElementById('unit').dataset.shown >= 2")
    assert page.locator("#grid .tile").count() == 6  # every channel of conv2_1
    strongest = page.evaluate("window.deconvServe.grid.strongest")
    assert page.eval_on_selector("#grid .tile.selected", "t => +t.dataset.channel") == strongest
    peaks = [float(p) for p in page.eval_on_selector_all("#grid .tile", "ts => ts.map(t => t.dataset.peak)")]
    assert peaks == sorted(peaks, reverse=True)  # strongest first by default
    shown = page.evaluate("+document.getElementById('unit').dataset.shown")
    page.locator("#grid .tile").nth(3).click()
    page.wait_for_function(f"() => +document.getElementById('unit').dataset.shown > {shown}")
    chosen = page.eval_on_selector("#grid .tile.selected", "t => +t.dataset.channel")
    assert f"channel {chosen} at" in page.inner_text("#unit h3")
    assert page.locator("#unit figure").count() == 4  # input, patch, deconvnet, guided
    assert all(_loaded(page, "#unit img"))
    # Its dataset context: the top-4 strips and patches, and this image on the histogram.
    assert page.locator("#context figure.entry").count() == 4 and all(_loaded(page, "#context img.cell"))
    assert page.locator("svg.histogram #here").count() == 1
    assert "stronger than" in page.inner_text("#share")
    assert page.get_attribute("#site-link", "href") == f"/site/conv2_1/{chosen}.html"
    # Keys: the next channel in the grid's order.
    order = page.evaluate("window.deconvServe.order")
    shown = page.evaluate("+document.getElementById('unit').dataset.shown")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => +document.getElementById('unit').dataset.shown > {shown}")
    following = order[min(order.index(chosen) + 1, len(order) - 1)]
    assert f"channel {following} at" in page.inner_text("#unit h3")
    page.select_option("#sort", "channel")
    assert page.eval_on_selector_all("#grid .tile", "ts => ts.map(t => +t.dataset.channel)") == list(range(6))


def test_the_site_links_back_to_the_live_view(page):
    page.allowed = lambda problem: False
    page.goto("/site/conv2_1/2.html")
    with page.expect_navigation():  # the link leaves the site's page: wait for the live view to load
        page.click("#live-view")
    page.wait_for_function("() => { const unit = document.getElementById('unit');"
                           " return unit && unit.dataset.shown >= 1; }")
    assert "channel 2 at" in page.inner_text("#unit h3")


def test_a_webcam_updates_the_grid_frame_after_frame(page):
    # A newer frame supersedes a stale request (409), which the browser reports as a failed load: expected.
    page.allowed = lambda problem: "status of 409" in problem
    page.goto("/?layer=conv2_1")
    page.wait_for_selector("#unit[data-shown]")
    before = page.evaluate("+document.getElementById('grid').dataset.shown")
    page.click("#webcam")
    page.wait_for_function(f"() => +document.getElementById('grid').dataset.shown >= {before + 3}", timeout=20_000)
    assert page.evaluate("window.deconvServe.image").startswith("photo:") is False  # frames, not the photo
    page.click("#webcam")  # stop
