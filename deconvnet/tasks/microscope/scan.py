"""The microscope's scan: one pass over the images for every unit of every requested layer.

Per channel it keeps the k strongest images (deconvnet.dataset.scan.TopK, exact and order-independent)
and a histogram of the per-image maxima (histogram.Histograms), both from the same scores,
so the histogram costs no second pass. The state is checkpointed after every batch; an
interrupted scan resumes from it and ends with the same result.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ...dataset.scan import ImageFiles, TopK, batch_scores, collate, remove
from ...engine import Deconvnet
from ...errors import DeconvError
from ...fileio import atomic_path
from ...models.transforms import ImageTransform
from .histogram import Histograms

on_batch: Callable[[int], None] | None = None  # test hook, called after each checkpointed batch


@dataclass
class LayerScan:
    """One layer's results: the top-k lists and the histograms of all its channels."""

    top: TopK
    histograms: Histograms


@dataclass
class ScanState:
    fingerprint: str
    done: int
    layers: dict[str, LayerScan]
    skipped: list[tuple[int, str]]

    def save(self, path: Path) -> None:
        payload = {"fingerprint": self.fingerprint, "done": self.done, "skipped": [list(s) for s in self.skipped],
                   "layers": {name: {"top": scan.top.state(), "histograms": scan.histograms.state()}
                              for name, scan in self.layers.items()}}
        with atomic_path(path) as temporary:
            torch.save(payload, temporary)

    @classmethod
    def load(cls, path: Path) -> "ScanState":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            layers = {name: LayerScan(TopK(**item["top"]), Histograms(**item["histograms"]))
                      for name, item in payload["layers"].items()}
            skipped = [(int(index), str(reason)) for index, reason in payload["skipped"]]
            return cls(str(payload["fingerprint"]), int(payload["done"]), layers, skipped)
        except Exception as error:  # any damage: the caller says how to start over
            raise DeconvError(f"cannot read the scan checkpoint {path} ({type(error).__name__}: {error}); "
                              "re-run with --restart to discard it") from error


def scan(dn: Deconvnet, transform: ImageTransform, paths: list[Path], layers: dict[str, int], k: int,
         checkpoint: Path, fingerprint: str, *, batch_size: int, workers: int, device: torch.device,
         progress: bool) -> tuple[dict[str, LayerScan], list[tuple[int, str]]]:
    """Scan ``paths`` for every channel of ``layers`` ({name: channels}), resuming from ``checkpoint``.

    Returns the results per layer and the unreadable images as (index, reason). The
    checkpoint is left in place; the caller removes it once the results are safely written.
    """
    state = None
    if checkpoint.exists():
        loaded = ScanState.load(checkpoint)
        if loaded.fingerprint != fingerprint:
            raise DeconvError(f"{checkpoint} was left by an interrupted build with other settings; re-run with "
                              "--restart to discard it, or use the settings of that build")
        state = loaded
    if state is None:
        state = ScanState(fingerprint, 0, {name: LayerScan(TopK.empty(count, k), Histograms.empty(count))
                                           for name, count in layers.items()}, [])
    names = list(layers)
    everything = {name: torch.arange(count) for name, count in layers.items()}
    items = list(enumerate(paths))[state.done:]
    loader = DataLoader(ImageFiles(items, transform), batch_size=batch_size, num_workers=workers, collate_fn=collate)
    with tqdm(total=len(paths), initial=state.done, desc="scan", unit="img", dynamic_ncols=True,
              disable=not progress) as bar:
        for number, (indices, x, failed) in enumerate(loader):
            for index, reason in failed:
                if progress:
                    tqdm.write(f"warning: skipped {paths[index]}: {reason}", file=sys.stderr)
            state.skipped += failed
            if x is not None:
                outputs = dn.activations(x.to(device), names)
                for name in names:
                    values, positions = batch_scores(outputs[name], everything[name])  # (C, B) each
                    del outputs[name]  # free the big early maps as soon as they are scored
                    layer = state.layers[name]
                    layer.top = layer.top.merge(values, indices.expand_as(values), positions)
                    layer.histograms = layer.histograms.merged(Histograms.of(values))
            state.done += len(indices) + len(failed)
            state.save(checkpoint)
            if on_batch is not None:
                on_batch(number)
            bar.update(len(indices) + len(failed))
    return state.layers, state.skipped


def fingerprint_of(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def discard(checkpoint: Path) -> None:
    remove(checkpoint)
