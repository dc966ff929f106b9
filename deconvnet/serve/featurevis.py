"""The live explorer's feature visualizations: made once per (model, layer, channel, settings), kept on disk.

A click on a unit asks for its feature visualization (Olah et al., Distill 2017). The first ask
starts the optimization and answers its progress; the page asks again until it is done. The
picture is then written atomically to the cache folder, under a name that holds the model's
weights and every setting it depends on::

    CACHE/<model>-<weights sha256, 16>/<layer>/<channel>.<objective>-<size>px-<steps>steps-seed<seed>.png

so a later ask, in this server or the next, reads the file. The optimizations run one at a time
on a thread of their own, on a copy of the model made when the server starts (the live view's
worker keeps answering, and the two never share a module; ``--no-featurevis`` saves the copy's memory).

Example:
    >>> jobs = FeaturevisJobs(load("vgg16-hed"), "cache/")       # doctest: +SKIP
    >>> jobs.ask("conv5_3", 12)["state"]                           # doctest: +SKIP
    'running'
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from ..dataset.runner import model_identity
from ..errors import DeconvError
from ..featurevis import feature_visualization
from ..fileio import save_image_atomic
from ..models import LoadedModel
from ..tasks.microscope.featurevis import FeaturevisSettings, image_sides
from .worker import Busy, ModelWorker

QUEUE = 4  # optimizations waiting at most; more are answered "busy"


def default_cache(site: str | os.PathLike | None) -> Path:
    """Beside the site (``SITE/featurevis-cache``) when there is one, else ``$XDG_CACHE_HOME/deconvnet/featurevis``
    (``~/.cache/deconvnet/featurevis``)."""
    if site is not None:
        return Path(site) / "featurevis-cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deconvnet" / "featurevis"


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)[:80] or "_"


class FeaturevisJobs:
    """Feature visualizations of one model's units: from the cache, or made on a thread of their own."""

    def __init__(self, loaded: LoadedModel, cache: str | os.PathLike, settings: FeaturevisSettings | None = None,
                 *, queue_size: int = QUEUE) -> None:
        self.settings = settings or FeaturevisSettings()
        self.cache = Path(cache)
        # A copy made now, before the live view's worker runs the model: the two threads never share a module.
        self._loaded = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
        self._folder = self.cache / f"{_safe(loaded.name)}-{model_identity(loaded)[:16]}"
        self._worker = ModelWorker(queue_size)
        self._lock = threading.Lock()
        self._running: dict[Path, dict[str, Any]] = {}  # path -> {"progress", "future"}

    def close(self) -> None:
        self._worker.close()

    def path(self, layer: str, channel: int) -> Path:
        """Where the picture of ``layer``/``channel`` is kept; its name says every setting it depends on."""
        s = self.settings
        return (self._folder / _safe(layer)
                / f"{channel}.{s.objective}-{s.size}px-{s.steps}steps-seed{s.seed}.png")

    def ask(self, layer: str, channel: int) -> dict[str, Any]:
        """{"state": "done"} when the picture is on disk; else start it (once) and answer its progress.

        A failed optimization answers its error once (DeconvError), and a later ask tries again.
        """
        path = self.path(layer, channel)
        if path.is_file():
            return {"state": "done", "caption": self.settings.describe()}
        with self._lock:
            job = self._running.get(path)
            if job is None:
                job = {"progress": 0.0}
                try:
                    job["future"] = self._worker.submit(lambda: self._make(layer, channel, path, job))
                except Busy as error:
                    raise Busy(f"{len(self._running)} feature visualizations are being made; try again when one "
                               "is done") from error
                self._running[path] = job
        future = job["future"]
        try:
            future.result(timeout=0.2)  # a bad layer or channel fails at once, and a tiny model is done at once
        except TimeoutError:
            return {"state": "running", "progress": job["progress"]}
        except (DeconvError, ValueError, TypeError):
            with self._lock:
                self._running.pop(path, None)
            raise
        finally:
            if future.done():
                with self._lock:
                    self._running.pop(path, None)
        return {"state": "done", "caption": self.settings.describe()}

    def _make(self, layer: str, channel: int, path: Path, job: dict[str, Any]) -> None:
        if path.is_file():  # made meanwhile
            return
        loaded = self._loaded
        device = str(next(loaded.model.parameters()).device)
        side = image_sides(loaded, [layer], self.settings.size)[layer]
        fv = feature_visualization(loaded, layer, [channel], objective=self.settings.objective, size=side,
                                   steps=self.settings.steps, seed=self.settings.seed, device=device,
                                   on_step=lambda done, steps: job.__setitem__("progress", done / steps))
        save_image_atomic(path, Image.fromarray(fv.pictures()[0]))
