"""What the live explorer computes, on the engine's API: a layer's grid of channels and one unit's pictures.

No web code here: ``Explorer`` takes an image id, a layer and a unit and returns JSON-ready
dicts and PNG bytes; the server runs its methods on the model's worker thread (they are
not thread-safe). The pictures are drawn as ``deconv visualize`` draws them: the same
ranking (``strongest_channels``), receptive-field boxes (``Deconvnet.box``), projections
(``Deconvnet.project_units``, rule after rule on the same unit) and display rule
(``render.to_display`` of the map cropped to the field, clipped at the 99.5th percentile).
"""

from __future__ import annotations

import hashlib
import io
import math
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ..channels import channel_numbers
from ..dataset.images import UnreadableImage, open_image
from ..dataset.imageset import expand
from ..engine import Deconvnet
from ..errors import DeconvError
from ..models import LoadedModel
from ..render import crop_with_padding, to_display
from ..tasks.layers import layer_table
from ..tasks.visualize.compute import (  # visualize's own rule check, order, titles and ranking
    DEFAULT_MODES,
    RULE_TITLES,
    check_modes,
    rule_note,
    strongest_channels,
)
from .context import SiteContext

PERCENTILE = 99.5  # deconv visualize's default display clipping
TILE = 40  # a grid tile's longer side in pixels, about
GRID_COLUMNS = 32
IMAGES_KEPT = 16  # decoded inputs kept for later requests (oldest dropped first)
# Larger photos are shrunk to this long side once decoded, which bounds the memory the kept inputs take
# (16 x 1536 x 1536 x 3 bytes, 113 MB at most); the model sees a few hundred pixels anyway.
KEPT_SIDE = 1536
RESULTS_KEPT = 64  # computed pictures kept until the page fetches them
BOX_COLOUR = (255, 0, 0)  # as the visualize figure's outline


@dataclass
class Input:
    """A decoded image ready for the model."""

    id: str
    name: str
    photo: Image.Image  # upright RGB, as open_image returns it
    x: Tensor  # (1, 3, H, W), the model's input
    picture: np.ndarray  # (H, W, 3) uint8, the input as the model sees it


class _Kept(OrderedDict):
    """A small least-recently-used map, safe to use from several threads."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)

    def find(self, key: str) -> Any:
        with self.lock:
            value = self.get(key)
            if value is not None:
                self.move_to_end(key)
            return value


class _Computed:
    """Stands in for the Deconvnet in ``strongest_channels``: the activation is already computed.

    The grid needs every channel's map and the ranking; this lets the ranking of ``deconv
    visualize`` run on that one forward pass instead of a second.
    """

    def __init__(self, layer: str, activation: Tensor) -> None:
        self._answer = {layer: activation}

    def activations(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        return self._answer


def png(picture: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, 3) array (fast compression: these are sent, not stored)."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def outlined(picture: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """The picture with ``box`` = (top, left, height, width) outlined, clipped to the picture."""
    top, left, height, width = box
    image = Image.fromarray(picture)
    bottom, right = min(top + height, picture.shape[0]) - 1, min(left + width, picture.shape[1]) - 1
    top, left = max(top, 0), max(left, 0)
    if bottom >= top and right >= left:
        ImageDraw.Draw(image).rectangle((left, top, right, bottom), outline=BOX_COLOUR, width=2)
    return np.asarray(image)


def display_crop(loaded: LoadedModel, projection: Tensor, box: Sequence[int],
                 percentile: float | None = PERCENTILE) -> np.ndarray:
    """A projection (C, H, W) as ``deconv visualize`` shows it: in RGB, cropped to the field, mid-grey at zero."""
    return to_display(crop_with_padding(loaded.transform.as_rgb(projection), tuple(box)), percentile=percentile)


def sprite(activation: Tensor, columns: int = GRID_COLUMNS) -> tuple[np.ndarray, tuple[int, int]]:
    """Every channel's map as one grey image of tiles, row-major by channel; and the tile size (h, w).

    Each tile is scaled to its channel's own peak (white; zero and below black), so the
    pattern of a weak channel shows too: its strength is the peak printed under the tile
    and the sort order. Small maps are enlarged by repeating pixels, large ones shrunk.
    """
    maps = activation.detach().float().cpu()
    if maps.dim() == 1:  # a fully connected layer: one value per channel
        maps = maps[:, None, None]
    channels, height, width = maps.shape
    peaks = maps.reshape(channels, -1).amax(1).clamp(min=0)[:, None, None]
    scaled = torch.where(peaks > 0, maps.clamp(min=0) / torch.where(peaks > 0, peaks, 1), 0) * 255
    levels = (scaled + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    factor = max(1, TILE // max(height, width))
    tile_h, tile_w = height * factor, width * factor
    if max(tile_h, tile_w) > TILE:
        shrink = TILE / max(tile_h, tile_w)
        tile_h, tile_w = max(1, round(tile_h * shrink)), max(1, round(tile_w * shrink))
    columns = min(columns, channels)
    rows = math.ceil(channels / columns)
    sheet = np.zeros((rows * tile_h, columns * tile_w), np.uint8)
    for c in range(channels):
        row, column = divmod(c, columns)
        if (tile_h, tile_w) == (height * factor, width * factor):
            tile = levels[c].repeat(factor, 0).repeat(factor, 1)
        else:
            tile = np.asarray(Image.fromarray(levels[c]).resize((tile_w, tile_h), Image.Resampling.BOX))
        sheet[row * tile_h:(row + 1) * tile_h, column * tile_w:(column + 1) * tile_w] = tile
    return sheet, (tile_h, tile_w)


class Explorer:
    """One model (and optionally a second checkpoint of it) ready to answer the live page.

    >>> from deconvnet.models import load
    >>> explorer = Explorer(load("tiny-zfnet", weights="random"))          # doctest: +SKIP
    >>> picture = explorer.add_image(open("assets/cat.jpg", "rb").read(), "cat.jpg")  # doctest: +SKIP
    >>> explorer.grid(picture.id, "conv2")["channels"][0]                  # doctest: +SKIP
    """

    def __init__(self, loaded: LoadedModel, *, compare: LoadedModel | None = None, site: SiteContext | None = None,
                 images: str | Path | None = None, max_pixels: int | None = None,
                 photo_pattern: str = "*") -> None:
        self.loaded = loaded
        self.compare = compare
        self.site = site
        self.images_root = None if images is None else Path(images).resolve()
        self.max_pixels = max_pixels
        self.photo_pattern = photo_pattern  # which of the folder's images the page offers (uploads: any)
        self._dn = {"main": Deconvnet(loaded.model)}
        if compare is not None:
            self._dn["compare"] = Deconvnet(compare.model)
        self._inputs = _Kept(IMAGES_KEPT)
        self._results = _Kept(RESULTS_KEPT)
        self._peaks = _Kept(IMAGES_KEPT)
        self._scratch = tempfile.TemporaryDirectory(prefix="deconv-serve-")
        rows = layer_table(loaded)
        self.layers = [{"name": name, "alias": alias, "type": kind, "shape": shape, "field": field, "stride": stride}
                       for name, alias, kind, shape, field, stride in rows if shape.count("x") in (0, 2)
                       and shape != "-"]
        convolutions = [row for row in self.layers if row["type"] == "Conv2d"]
        self.default_layer = (convolutions or self.layers)[-1]["alias"] or (convolutions or self.layers)[-1]["name"]

    def close(self) -> None:
        for dn in self._dn.values():
            dn.release()
        self._scratch.cleanup()

    # -- inputs -------------------------------------------------------------------------
    def photos(self) -> list[str]:
        """The photos of the images folder, as paths relative to it."""
        if self.images_root is None:
            return []
        return [path.relative_to(self.images_root).as_posix() for path in expand(self.images_root)
                if path.resolve().is_relative_to(self.images_root) and fnmatch(path.name, self.photo_pattern)]

    def add_image(self, data: bytes, name: str = "upload") -> Input:
        """Decode uploaded bytes as ``open_image`` decodes a file; the same message when it cannot."""
        digest = hashlib.sha256(data).hexdigest()[:20]
        kept = self._inputs.find(digest)
        if kept is not None:
            return kept
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(name).name)[-80:] or "upload"
        folder = Path(self._scratch.name) / digest
        folder.mkdir(exist_ok=True)
        path = folder / safe
        path.write_bytes(data)
        try:
            photo = self._open(path)
        except UnreadableImage as error:  # the CLI's message, naming the file as the user named it
            raise UnreadableImage(str(error).replace(str(folder) + "/", "")) from None
        finally:
            path.unlink(missing_ok=True)
        return self._keep(digest, safe, photo)

    def add_photo(self, relative: str, path: Path) -> Input:
        """A photo of the images folder (``path``, already checked to lie inside it)."""
        key = "photo:" + relative
        kept = self._inputs.find(key)
        return kept if kept is not None else self._keep(key, relative, self._open(path))

    def _open(self, path: Path) -> Image.Image:
        photo = open_image(path)
        if self.max_pixels is not None and photo.width * photo.height > self.max_pixels:
            raise UnreadableImage(f"image {path.name} has {photo.width * photo.height:,} pixels "
                                  f"({photo.width}x{photo.height}); this server accepts at most "
                                  f"{self.max_pixels:,} (--max-pixels)")
        return photo

    def _keep(self, key: str, name: str, photo: Image.Image) -> Input:
        if max(photo.size) > KEPT_SIDE:
            photo.thumbnail((KEPT_SIDE, KEPT_SIDE), Image.Resampling.LANCZOS)
        x = self.loaded.transform(photo)[None]
        picture = Input(key, name, photo, x, self.loaded.transform.to_uint8(x[0]))
        self._inputs.put(key, picture)
        return picture

    def input(self, image_id: str) -> Input:
        picture = self._inputs.find(image_id)
        if picture is None:
            raise LookupError(f"unknown image {image_id!r}: it was never uploaded or is no longer kept; "
                              "upload it again")
        return picture

    # -- results ------------------------------------------------------------------------
    def result(self, token: str) -> bytes | None:
        return self._results.find(token)

    def _store(self, picture: np.ndarray | bytes) -> str:
        data = picture if isinstance(picture, bytes) else png(picture)
        token = hashlib.sha256(data).hexdigest()[:24]
        self._results.put(token, data)
        return token

    # -- the grid -----------------------------------------------------------------------
    def layer_name(self, layer: str) -> str:
        return self._dn["main"].layer(layer).name

    def grid(self, image_id: str, layer: str) -> dict:
        """Every channel of ``layer`` for the image: peak, its position, mean, and one sprite of all maps."""
        started = time.perf_counter()
        picture = self.input(image_id)
        dn = self._dn["main"]
        name = dn.layer(layer).name
        activation = dn.activations(picture.x, [name])[name]  # (1, C, H, W) or (1, C)
        if activation.dim() not in (2, 4):
            raise DeconvError(f"layer {name} outputs shape {tuple(activation.shape)}; the grid needs (N, C) or "
                              "(N, C, H, W): pick a convolution or a fully connected layer")
        ranked = strongest_channels(_Computed(name, activation), picture.x, name,  # type: ignore[arg-type]
                                    top=activation.shape[1])
        self._peaks.put(f"{image_id}\n{name}", {unit.channel: unit.value for unit in ranked})
        means = activation[0].reshape(activation.shape[1], -1).float().mean(1).tolist()
        channels = sorted(({"channel": unit.channel, "peak": unit.value, "mean": means[unit.channel],
                            "y": None if unit.position is None else unit.position[0],
                            "x": None if unit.position is None else unit.position[1], "rank": rank}
                           for rank, unit in enumerate(ranked)), key=lambda row: row["channel"])
        sheet, (tile_h, tile_w) = sprite(activation[0])
        columns = min(GRID_COLUMNS, activation.shape[1])
        return {"image": image_id, "layer": name, "alias": dn.layer(name).alias, "channels": channels,
                "map": list(activation.shape[2:]) or [1, 1], "tile": [tile_h, tile_w], "columns": columns,
                "sprite": f"/api/result/{self._store(sheet)}.png", "strongest": ranked[0].channel,
                "seconds": time.perf_counter() - started}  # the model's share of the answer's time

    # -- one unit -----------------------------------------------------------------------
    def unit(self, image_id: str, layer: str, channel: int, position: tuple[int, int] | None = None,
             modes: Sequence[str] | None = None, which: str = "main") -> dict:
        """One unit's pictures: the input with its field, the patch, and its projection under each rule."""
        if which not in self._dn:
            raise DeconvError("no second checkpoint to compare: start the server with --compare WEIGHTS"
                              if which == "compare" else f"unknown model {which!r}: expected main or compare")
        started = time.perf_counter()
        rules = check_modes(list(DEFAULT_MODES) if modes is None else modes)
        picture = self.input(image_id)
        dn, loaded = self._dn[which], self.loaded if which == "main" else self.compare
        assert loaded is not None  # checked above
        target = dn.layer(layer)
        requests = [(0, channel, position)]
        maps = {}
        for rule in rules:
            projection = dn.project_units(picture.x, target.name, requests, mode=rule)
            requests = [(0, one.channel, one.position) for one in projection.units]  # the very unit, every rule
            maps[rule] = projection.maps[0]
        unit = projection.units[0]
        box = dn.box(target.name, unit.position, (picture.x.shape[-2], picture.x.shape[-1]))
        where = f" at (y={unit.position[0]}, x={unit.position[1]})" if unit.position else ""
        name = target.name + (f" ({target.alias})" if target.alias else "")
        answer = {
            "image": image_id, "layer": target.name, "alias": target.alias, "channel": unit.channel,
            "position": None if unit.position is None else list(unit.position), "value": unit.value,
            "box": {"top": box.top, "left": box.left, "height": box.height, "width": box.width},
            "title": f"{loaded.name} {name}, channel {unit.channel}{where}",
            "subtitle": f"activation {unit.value:.4g}{f', {rules[0]} projection' if len(rules) == 1 else ''}, "
                        f"receptive field {box.height}x{box.width}",
            "note": rule_note(rules), "weights": loaded.weights, "which": which,
            "input": f"/api/result/{self._store(outlined(picture.picture, tuple(box)))}.png",
            "patch": f"/api/result/{self._store(np.asarray(crop_with_padding(picture.picture, tuple(box))))}.png",
            "projections": [{"mode": rule, "title": RULE_TITLES[rule],
                             "url": f"/api/result/{self._store(display_crop(loaded, maps[rule], box))}.png"}
                            for rule in rules],
        }
        if self.site is not None and which == "main":
            peak = self._channel_peak(image_id, target.name, unit.channel)
            answer["context"] = self.site.unit(target.name, unit.channel, peak)
        answer["seconds"] = time.perf_counter() - started
        return answer

    def _channel_peak(self, image_id: str, layer: str, channel: int) -> float:
        """The channel's strongest activation on the image: what the site's histogram counts per image."""
        peaks = self._peaks.find(f"{image_id}\n{layer}")
        if peaks is None:
            activation = self._dn["main"].activations(self.input(image_id).x, [layer])[layer][0]
            peaks = dict(enumerate(activation.reshape(activation.shape[0], -1).amax(1).tolist()))
            self._peaks.put(f"{image_id}\n{layer}", peaks)
        return float(peaks[channel])

    def figure(self, image_id: str, layer: str, channel: int, position: tuple[int, int] | None = None,
               modes: Sequence[str] | None = None) -> bytes:
        """The ``deconv visualize`` figure of the unit, as PNG bytes (it is that function's own figure)."""
        from ..tasks.visualize import visualize

        picture = self.input(image_id)
        path = Path(self._scratch.name) / f"{hashlib.sha256(picture.id.encode()).hexdigest()[:16]}" / picture.name
        path = path.with_suffix(".png")  # lossless: the figure sees the very pixels the page saw
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            picture.photo.save(path)
        result = visualize(path, layer=layer, channel=channel, position=position, mode=list(modes or DEFAULT_MODES),
                           model=self.loaded)
        buffer = io.BytesIO()
        result.figure.savefig(buffer, format="png")
        return buffer.getvalue()

    def describe(self) -> dict:
        """The model, its layers and what the server offers, for the page."""
        return {"model": self.loaded.name, "weights": self.loaded.weights, "layers": self.layers,
                "default_layer": self.default_layer, "modes": ["deconvnet", "guided", "backprop"],
                "default_modes": list(DEFAULT_MODES), "input_size": list(self.loaded.transform.input_size),
                "compare": None if self.compare is None else self.compare.weights,
                "site": None if self.site is None else self.site.describe(), "photos": self.photos()}


def as_position(y: Any, x: Any) -> tuple[int, int] | None:
    """A (y, x) from two query values, None when both are absent."""
    if y in (None, "") and x in (None, ""):
        return None
    try:
        return int(y), int(x)
    except (TypeError, ValueError):
        raise DeconvError(f"expected a position as two integers y and x, received y={y!r}, x={x!r}") from None


def as_channel(value: Any) -> int:
    """A query's channel as the one channel type takes it (deconvnet.channels); the layer checks its range.

    >>> as_channel("12")
    12
    """
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DeconvError(f"expected an integer channel, received {value!r}") from None
    return int(channel_numbers([number])[0])  # type: ignore[index]


def as_modes(text: str | None) -> list[str] | None:
    return None if not text else [part.strip() for part in text.split(",") if part.strip()]


__all__ = ["Explorer", "Input", "as_channel", "as_modes", "as_position", "display_crop", "outlined", "png", "sprite"]
