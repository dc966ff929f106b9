"""The README's screenshot of `deconv serve`: the shipped cat photo, conv5_3, channel 12 (free photos only).

    python scripts/make_serve_screenshot.py        # writes assets/readme-serve.png
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import _free_port, _start_server, _wait_shown  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = _start_server(port)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/?layer=conv5_3")
            _wait_shown(page, "unit", 0)
            page.click('#photos img[data-name="cat.jpg"]')
            _wait_shown(page, "unit", 1, "#unit img")
            shown = page.evaluate("() => +document.getElementById('unit').dataset.shown")
            page.click('#grid .tile[data-channel="12"]')
            _wait_shown(page, "unit", shown, "#unit img")
            page.screenshot(path=str(REPO / "assets" / "readme-serve.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("wrote assets/readme-serve.png")


if __name__ == "__main__":
    main()
