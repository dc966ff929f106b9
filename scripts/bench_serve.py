"""Benchmark `deconv serve` as a user meets it: timings in a real browser against the running server.

    pip install -e ".[serve,test,bench]"
    python scripts/bench_serve.py --tries 20

Starts ``deconv serve`` (vgg16-hed, offline) in a subprocess on a free port and drives the
page with Playwright and Debian's chromium:

- click to projections: a click on a conv5_3 tile until the unit's pictures (input with the
  field, patch, deconvnet and guided projections) are loaded in the page;
- upload to grid: a new photo set on the file input until conv5_3's grid of 512 channels is
  shown (sprite loaded);
- webcam: grids per second at conv4_3 from Chromium's fake camera;
- flood: 200 requests from 20 clients at once (grid and unit), their statuses, the slowest
  answer and the server's peak RSS.

p50 and p95 over ``--tries``. The baseline is the model's own time for the same requests,
measured in the server at the same moment (the answers' "seconds"), so the ratios say what
the web round trip and the page add, whatever the machine's load. Photos: the shipped ones
and, when present, the shared ImageNet samples (never copied). Writes bench_serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine import cpu_model  # scripts/machine.py

REPO = Path(__file__).resolve().parent.parent
SAMPLES = Path(os.environ.get("DECONVNET_SAMPLES") or REPO.parent / "shared/data/imagenet-samples")
GOALS = {"click_to_projections_p95": 1.5, "upload_to_grid_p95": 1.0, "webcam_grids_per_second": 2.0}


def _percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "n": len(ordered)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(port: int) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-m", "deconvnet.cli", "serve", "--port", str(port), "--queue", "16"],
                              cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said = []
    for line in server.stdout:  # the URL is printed once the socket listens
        said.append(line)
        if "http://" in line:
            threading.Thread(target=server.stdout.read, daemon=True).start()  # keep the pipe drained
            return server
    raise SystemExit("the server did not start: " + "".join(said))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _shown(page, element: str) -> int:
    return page.evaluate(f"() => +(document.getElementById('{element}').dataset.shown || 0)")


def _wait_shown(page, element: str, after: int, images: str | None = None) -> None:
    loaded = "" if images is None else (f" && Array.from(document.querySelectorAll('{images}'))"
                                        ".every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_function(f"() => +(document.getElementById('{element}').dataset.shown || 0) > {after}{loaded}",
                           timeout=60_000)


def _browser_timings(url: str, photos: list[Path], tries: int, webcam_seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=args)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(url + "?layer=conv5_3")
        _wait_shown(page, "unit", 0)
        clicks, click_compute, upload_compute = [], [], []
        for i in range(tries):
            before = _shown(page, "unit")
            tile = page.locator("#grid .tile").nth(i + 1)  # the strongest channels, one after the other
            start = time.perf_counter()
            tile.click()
            _wait_shown(page, "unit", before, "#unit img")
            clicks.append(time.perf_counter() - start)
            click_compute.append(page.evaluate("() => window.deconvServe.unit.seconds"))
        uploads = []
        for photo in photos[:tries]:
            grids, units = _shown(page, "grid"), _shown(page, "unit")
            start = time.perf_counter()
            page.set_input_files("#file", str(photo))
            _wait_shown(page, "grid", grids)
            uploads.append(time.perf_counter() - start)
            upload_compute.append(page.evaluate("() => window.deconvServe.grid.seconds"))
            _wait_shown(page, "unit", units)  # the strongest unit follows; let it finish before the next photo
        page.goto(url + "?layer=conv4_3")
        _wait_shown(page, "unit", 0)
        page.click("#webcam")
        _wait_shown(page, "grid", _shown(page, "grid"))
        grids, start = _shown(page, "grid"), time.perf_counter()
        time.sleep(webcam_seconds)
        rate = (_shown(page, "grid") - grids) / (time.perf_counter() - start)
        page.click("#webcam")
        browser.close()
    return {"click_to_projections": _percentiles(clicks), "upload_to_grid": _percentiles(uploads),
            "model_time_of_a_click": _percentiles(click_compute), "model_time_of_a_grid": _percentiles(upload_compute),
            "webcam_grids_per_second_conv4_3": rate}


def _flood(url: str, photo: Path, clients: int = 20, each: int = 10) -> dict:
    import httpx

    with httpx.Client(base_url=url, timeout=60) as http:
        image = http.post("/api/images", content=photo.read_bytes(), params={"name": photo.name}).json()["id"]
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one_client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(each):
                start = time.perf_counter()
                path = "/api/grid" if i % 2 else "/api/unit"
                try:
                    status = http.get(path, params={"image": image, "layer": "conv5_3", "channel": i}).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    answers.append((status, time.perf_counter() - start))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, range(clients)))
    statuses: dict[str, int] = {}
    for status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"requests": len(answers), "statuses": statuses, "slowest_seconds": max(s for _, s in answers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--webcam-seconds", type=float, default=10)
    parser.add_argument("-o", "--output", default="bench_serve.json")
    args = parser.parse_args()

    photos = sorted((REPO / "assets").glob("*.jpg"))
    if SAMPLES.is_dir():
        photos += sorted(SAMPLES.glob("*.jpg"))[:: max(1, len(list(SAMPLES.glob("*.jpg"))) // args.tries)]
    port = _free_port()
    server = _start_server(port)
    url = f"http://127.0.0.1:{port}/"
    try:
        browser = _browser_timings(url, photos, args.tries, args.webcam_seconds)
        flood = _flood(url, photos[0])
        alive = server.poll() is None
        rss = _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    load = os.getloadavg()
    import torch

    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": load,
              "torch_threads": torch.get_num_threads(),
              "browser": browser, "flood": {**flood, "server_alive": alive, "server_peak_rss_mb": rss},
              "ratios": {  # the browser's time over the model's time of the same requests, in the server
                  "click_p50_over_model_p50": browser["click_to_projections"]["p50"]
                  / browser["model_time_of_a_click"]["p50"],
                  "upload_p50_over_model_p50": browser["upload_to_grid"]["p50"]
                  / browser["model_time_of_a_grid"]["p50"]},
              "goals": GOALS}
    Path(args.output).write_text(json.dumps(result, indent=2))
    click, upload = browser["click_to_projections"], browser["upload_to_grid"]
    print(f"CPU {result['cpu']} ({result['cores']} cores), load average {load[0]:.1f}")
    print(f"the model's part (in the server): a click p50 {browser['model_time_of_a_click']['p50']:.3f}s, a grid p50 "
          f"{browser['model_time_of_a_grid']['p50']:.3f}s")
    print(f"click to projections (conv5_3, deconvnet+guided): p50 {click['p50']:.3f}s p95 {click['p95']:.3f}s "
          f"(goal p95 <= {GOALS['click_to_projections_p95']}s)")
    print(f"upload to grid (conv5_3): p50 {upload['p50']:.3f}s p95 {upload['p95']:.3f}s "
          f"(goal p95 <= {GOALS['upload_to_grid_p95']}s)")
    print(f"webcam (conv4_3): {browser['webcam_grids_per_second_conv4_3']:.2f} grids/s "
          f"(goal >= {GOALS['webcam_grids_per_second']})")
    print(f"flood: {flood['requests']} requests, statuses {flood['statuses']}, "
          f"slowest {flood['slowest_seconds']:.1f}s, server alive {alive}, peak RSS {rss:.0f} MB")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
