"""A unit's dataset context from a microscope site: its top-k, its histogram, and where this input falls.

The site (``deconv microscope``) keeps its numbers in ``SITE/data/``: ``site.json`` (the
settings, layers, modes and folders) and ``<folder>.json`` per layer (each channel's top-k
entries and the histogram of its per-image maxima). The pictures are the unit page's
strips, ``SITE/<folder>/img/<channel>.<mode>.jpg`` and ``...patches.jpg``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ..errors import DeconvError

DATA = "data"
MANIFEST = "site.json"
CELL = 96  # side of a strip's cell in pixels (the microscope's thumbnails.CELL)


def share_below(histogram: dict, value: float) -> float:
    """The share of the histogram's images whose value is below ``value`` (linear within a bin).

    >>> share_below({"start": 0.0, "width": 1.0, "counts": [1, 2, 1]}, 1.5)
    0.5
    """
    counts, start, width = histogram["counts"], histogram["start"], histogram["width"]
    total = sum(counts)
    if total == 0:
        return 0.0
    below = 0.0
    for j, count in enumerate(counts):
        low = start + j * width
        if value >= low + width:
            below += count
        elif value > low:
            below += count * (value - low) / width
    return below / total


class SiteContext:
    """A microscope site built for the served model and weights.

    >>> site = SiteContext("site/", identity="…sha256…", model="vgg16-hed")  # doctest: +SKIP
    >>> site.unit("features.28", 12, peak=3.2)["share_below"]                # doctest: +SKIP
    0.97
    """

    def __init__(self, root: str | Path, *, model: str, identity: str) -> None:
        self.root = Path(root).resolve()
        path = self.root / DATA / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DeconvError(f"{root} is not a microscope site (no {DATA}/{MANIFEST}); build one with "
                              f"deconv microscope IMAGES -o {root} --model {model}") from None
        except (OSError, ValueError) as error:
            raise DeconvError(f"cannot read {path} ({error}); rebuild the site with deconv microscope") from error
        settings = manifest.get("settings", {})
        if settings.get("model") != model or settings.get("weights") != identity:
            raise DeconvError(f"{root} was built for model {settings.get('model')} with weights "
                              f"{str(settings.get('weights'))[:16]}..., not the served {model} with weights "
                              f"{identity[:16]}...: build a site for these weights with deconv microscope")
        self.modes: list[str] = manifest.get("modes", [])
        self.k: int = settings.get("k", 9)
        self.images: int = settings.get("number of images", 0) - len(manifest.get("skipped", []))
        self.folders: dict[str, str] = dict(zip(manifest.get("layers", []), manifest.get("folders", [])))
        self._tables: dict[str, dict] = {}
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"layers": list(self.folders), "modes": self.modes, "k": self.k, "images": self.images}

    def _table(self, layer: str) -> dict:
        with self._lock:
            if layer not in self._tables:
                path = self.root / DATA / f"{self.folders[layer]}.json"
                self._tables[layer] = json.loads(path.read_text(encoding="utf-8"))
            return self._tables[layer]

    def unit(self, layer: str, channel: int, peak: float) -> dict:
        """The unit's site data, with ``peak`` (its activation on this input) placed in the histogram."""
        if layer not in self.folders:
            return {"available": False,
                    "note": f"the site has no layer {layer}; its layers: {', '.join(self.folders)}. Add it with "
                            f"deconv microscope IMAGES -o SITE --layers {layer}"}
        table = self._table(layer)
        folder = self.folders[layer]
        entries = table["channels"].get(str(channel), [])
        histogram = table["histograms"].get(str(channel))
        base = f"/site/{folder}"
        return {
            "available": True, "k": self.k, "images": self.images, "peak": peak, "cell": CELL,
            "entries": [{key: entry.get(key) for key in ("image", "y", "x", "value", "label")} for entry in entries],
            "strips": {mode: f"{base}/img/{channel}.{mode}.jpg" for mode in self.modes} if entries else {},
            "patches": f"{base}/img/{channel}.patches.jpg" if entries else None,
            "histogram": histogram, "share_below": None if histogram is None else share_below(histogram, peak),
            "page": f"{base}/{channel}.html",
        }
