"""The microscope's pages: plain HTML with one shared script and stylesheet, no server, no network.

    SITE/index.html               the model and a table of the layers with their mosaics
    SITE/<layer>/index.html       every unit of the layer as a tile (one sprite image), sortable, filterable
    SITE/<layer>/<channel>.html   one unit: its top-k projections per mode beside their patches, the histogram
                                  of its per-image maxima, the labels of its top-k, prev/next/up links
    SITE/site.js, SITE/site.css   the jump box, keyboard navigation (left/right, u) and the layer page's sorting

Everything opens from ``file://``: the data a page needs is in the page, and the layer table
of the jump box is in site.js (a script, which browsers load from disk, unlike JSON).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ...dataset.results import Entry
from ...fileio import write_text_atomic
from . import thumbnails

SHARED_FILES = ("index.html", "site.js", "site.css")


@dataclass
class UnitInfo:
    channel: int
    entries: list[Entry]  # top-k, best first
    histogram: dict | None  # {"start", "width", "counts"} of the per-image maxima
    peak: float | None
    dead: bool  # never positive over the set
    selectivity: float | None  # share of the top-k with the most common label
    featurevis: float | None = None  # the activation its feature visualization reaches (None: no picture)


@dataclass
class LayerInfo:
    name: str
    alias: str | None
    folder: str
    kind: str
    shape: str
    field: str
    units: list[UnitInfo]

    @property
    def title(self) -> str:
        return f"{self.alias} ({self.name})" if self.alias else self.name

    @property
    def dead_share(self) -> float:
        return sum(u.dead for u in self.units) / max(len(self.units), 1)


_e = html.escape


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _write(path: Path, text: str) -> None:
    """Write only when the content changes, so an unchanged page keeps its file."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text)


def _page(title: str, root: str, body: str, extra_head: str = "") -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{root}site.css">{extra_head}</head>
<body data-root="{root}">
<header><a class="home" href="{root}index.html">deconvnet microscope</a>
<form id="jump" autocomplete="off"><input name="q" placeholder="conv4_3/120" aria-label="jump to a layer or unit"
title="a layer (name or alias), or layer/channel"> <button>go</button> <span id="jump-error"></span></form></header>
<main>
{body}
</main>
<script src="{root}site.js"></script>
</body></html>
"""


def write_site(out: Path, *, model: str, identity: str, transform: dict, images: int, images_root: str, k: int,
               modes: list[str], layers: list[LayerInfo], labelled: bool, featurevis: str | None = None) -> None:
    """Write every page of the site (unchanged pages are left alone) and the shared script and stylesheet.

    ``featurevis`` describes how the units' feature visualizations were made (None: the site has none).
    """
    _write(out / "site.css", _CSS)
    table = {}
    for layer in layers:
        entry = [layer.folder, len(layer.units)]
        table[layer.name] = entry
        if layer.alias:
            table[layer.alias] = entry
        table[layer.folder] = entry
    _write(out / "site.js", "\"use strict\";\nconst SITE_LAYERS = " + json.dumps(table, sort_keys=True) + ";\n" + _JS)
    _write(out / "index.html", _index(model, identity, transform, images, images_root, k, modes, layers))
    for layer in layers:
        folder = out / layer.folder
        folder.mkdir(exist_ok=True)
        _write(folder / "index.html", _layer_page(layer, modes, labelled))
        for i, unit in enumerate(layer.units):
            before = layer.units[i - 1].channel if i > 0 else None
            after = layer.units[i + 1].channel if i + 1 < len(layer.units) else None
            _write(folder / f"{unit.channel}.html", _unit_page(layer, unit, before, after, modes, images, k,
                                                               featurevis))


def _index(model, identity, transform, images, images_root, k, modes, layers) -> str:
    rows = []
    for layer in layers:
        mosaic = f"{quote(layer.folder)}/mosaic.{quote(modes[0])}.jpg"
        rows.append(
            f'<tr><td><a href="{quote(layer.folder)}/index.html">{_e(layer.alias or layer.name)}</a></td>'
            f"<td>{_e(layer.name)}</td><td>{_e(layer.kind)}</td><td>{_e(layer.shape)}</td><td>{_e(layer.field)}</td>"
            f"<td>{len(layer.units)}</td><td>{layer.dead_share:.0%}</td>"
            f'<td><a href="{quote(layer.folder)}/index.html"><img class="mosaic" src="{mosaic}" '
            f'alt="first units of {_e(layer.name)}" loading="lazy"></a></td></tr>')
    described = ", ".join(f"{key} {value}" for key, value in transform.items())
    body = f"""<h1>{_e(model)}</h1>
<p class="meta">weights sha256 <code>{_e(identity)}</code><br>transform: {_e(described)}<br>
{images} images{f" from <code>{_e(images_root)}</code>" if images_root else ""}; top {k} per unit;
modes: {_e(", ".join(modes))}</p>
<table class="layers"><thead><tr><th>layer</th><th>name</th><th>type</th><th>shape</th><th>receptive field</th>
<th>channels</th><th>dead</th><th>first units ({_e(modes[0])})</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class="meta">Keys: type <kbd>conv4_3/120</kbd> in the box above to open a unit. A unit is dead when its
activation is never positive over the image set.</p>"""
    return _page(f"{model}: microscope", "", body)


def _layer_page(layer: LayerInfo, modes: list[str], labelled: bool) -> str:
    tiles = []
    step = 2 * thumbnails.TILE
    for i, unit in enumerate(layer.units):
        row, column = divmod(i, thumbnails.TILE_COLUMNS)
        top = unit.entries[0] if unit.entries else None
        hint = f"{unit.channel}: peak {_number(unit.peak)}" + (f" on {top.image}" if top else "")
        tiles.append(
            f'<a class="tile{" dead" if unit.dead else ""}" href="{unit.channel}.html" data-channel="{unit.channel}" '
            f'data-peak="{"" if unit.peak is None else repr(unit.peak)}" '
            f'data-selectivity="{"" if unit.selectivity is None else repr(unit.selectivity)}" title="{_e(hint)}">'
            f'<i style="background-position:-{column * step}px -{row * thumbnails.TILE}px"></i>'
            + _tile_featurevis(unit) + f"<b>{unit.channel}</b><small>{_number(unit.peak)}</small></a>")
    switch = "".join(f'<label><input type="radio" name="mode" value="{_e(m)}"{" checked" if i == 0 else ""}> '
                     f"{_e(m)}</label> " for i, m in enumerate(modes))
    dead = sum(u.dead for u in layer.units)
    body = f"""<nav class="crumbs"><a rel="up" href="../index.html">all layers</a> › {_e(layer.title)}</nav>
<h1>{_e(layer.title)}</h1>
<p class="meta">{_e(layer.kind)}, output {_e(layer.shape)}, receptive field {_e(layer.field)};
{len(layer.units)} units, {dead} dead (never positive; marked red). Each tile: the best projection beside its
image patch{"; below, its feature visualization" if any(u.featurevis is not None for u in layer.units) else ""}.</p>
<p class="controls">sort by <select id="sort"><option value="channel">channel</option>
<option value="peak">peak activation</option>
<option value="selectivity"{"" if labelled else " disabled"}>selectivity{"" if labelled else " (needs labels)"}</option>
</select> <label><input type="checkbox" id="hide-dead"> hide dead units</label>
{f"<span class='modes'>projection: {switch}</span>" if len(modes) > 1 else ""}</p>
<div id="units" class="tiles">{"".join(tiles)}</div>"""
    # In the page itself, so the URL is relative to the page (in site.css it would be relative to the sheet).
    sprite = f"\n<style id=\"sprite\">.tile i {{ background-image: url('tiles.{quote(modes[0])}.jpg'); }}</style>"
    return _page(f"{layer.title}: microscope", "../", body, extra_head=sprite)


def _tile_featurevis(unit: UnitInfo) -> str:
    if unit.featurevis is None:
        return ""
    return (f'<img class="featurevis" src="img/{unit.channel}.featurevis.jpg" width="{thumbnails.TILE}" '
            f'height="{thumbnails.TILE}" alt="feature visualization of {unit.channel}" loading="lazy">')


def _featurevis_section(unit: UnitInfo, how: str | None) -> str:
    if unit.featurevis is None or how is None:
        return ""
    return (f'<h2>Feature visualization</h2>\n<figure class="featurevis"><img src="img/{unit.channel}.featurevis.jpg" '
            f'alt="feature visualization of channel {unit.channel}"><figcaption>{_e(how)}; it reaches '
            f'<span class="value">{unit.featurevis:.4g}</span></figcaption></figure>\n')


def _histogram(unit: UnitInfo, images: int, k: int) -> str:
    hist = unit.histogram
    if not hist:
        return "<p class='meta'>no histogram (no image was scored)</p>"
    counts, start, width = hist["counts"], hist["start"], hist["width"]
    w, h, pad = 480, 120, 28
    tallest = max(counts)
    bar = (w - 2 * pad) / len(counts)
    bars = []
    for j, count in enumerate(counts):
        height = (h - 2 * pad) * count / tallest
        low = start + j * width
        bars.append(f'<rect x="{pad + j * bar:.1f}" y="{h - pad - height:.1f}" width="{max(bar - 1, 1):.1f}" '
                    f'height="{height:.1f}"><title>{count} images in [{low:.4g}, {low + width:.4g})</title></rect>')
    marker = ""
    if len(unit.entries) >= k:
        threshold = unit.entries[-1].value
        x = pad + (threshold - start) / (width * len(counts)) * (w - 2 * pad)
        marker = (f'<line class="kth" x1="{x:.1f}" x2="{x:.1f}" y1="{pad - 6}" y2="{h - pad}"/>'
                  f'<text x="{x:.1f}" y="{pad - 9}" text-anchor="middle">top {k}</text>')
    end = start + width * len(counts)
    return (f'<svg class="histogram" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="histogram of the per-image maximum">{"".join(bars)}{marker}'
            f'<line x1="{pad}" x2="{w - pad}" y1="{h - pad}" y2="{h - pad}" class="axis"/>'
            f'<text x="{pad}" y="{h - pad + 16}">{start:.4g}</text>'
            f'<text x="{w - pad}" y="{h - pad + 16}" text-anchor="end">{end:.4g}</text>'
            f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{tallest}</text></svg>'
            f'<p class="meta">The unit\'s strongest activation in each of the {images} images '
            f"(bins of {width:.4g}); the line marks the k-th best, the weakest image shown above.</p>")


def _unit_page(layer: LayerInfo, unit: UnitInfo, before: int | None, after: int | None, modes: list[str],
               images: int, k: int, featurevis: str | None = None) -> str:
    cell = thumbnails.CELL
    figures = []
    for i, entry in enumerate(unit.entries):
        where = "" if entry.position is None else f"({entry.position[0]}, {entry.position[1]})"
        shift = f"object-position:-{i * cell}px 0"
        pictures = "".join(f'<img class="cell" src="img/{unit.channel}.{quote(mode)}.jpg" style="{shift}" '
                           f'width="{cell}" height="{cell}" alt="{_e(mode)} projection {i + 1}" title="{_e(mode)}">'
                           for mode in modes)
        pictures += (f'<img class="cell" src="img/{unit.channel}.patches.jpg" style="{shift}" width="{cell}" '
                     f'height="{cell}" alt="image patch {i + 1}" title="image patch">')
        label = entry.label
        figures.append(
            f'<figure class="entry" data-rank="{i + 1}"><div>{pictures}</div><figcaption><b>{i + 1}.</b> '
            f'<span class="image">{_e(entry.image)}</span>'
            + (f' <span class="label">{_e(label)}</span>' if label else "")
            + f' <span class="where">{where}</span> <span class="value">{entry.value:.6g}</span>'
            + "</figcaption></figure>")
    counted = Counter(str(e.label) for e in unit.entries if e.label)
    label_list = ", ".join(f"{_e(name)} ×{n}" if n > 1 else _e(name)
                           for name, n in sorted(counted.items(), key=lambda item: (-item[1], item[0])))
    links = ((f'<a rel="prev" href="{before}.html">← {before}</a>' if before is not None else "<span>←</span>")
             + f' <a rel="up" href="index.html">↑ {_e(layer.alias or layer.name)}</a> '
             + (f'<a rel="next" href="{after}.html">{after} →</a>' if after is not None else "<span>→</span>"))
    columns = " · ".join([*modes, "image patch"])
    body = f"""<nav class="crumbs"><a href="../index.html">all layers</a> › <a href="index.html">{_e(layer.title)}</a>
› channel {unit.channel} <span class="links">{links}</span></nav>
<h1>{_e(layer.alias or layer.name)} / {unit.channel}{' <span class="dead-tag">dead</span>' if unit.dead else ""}</h1>
<p class="meta">{_e(layer.title)}, {_e(layer.kind)}; peak activation <span id="peak">{_number(unit.peak)}</span>;
selectivity {"–" if unit.selectivity is None else f"{unit.selectivity:.2f}"}; receptive field {_e(layer.field)}.
Keys: ← → previous and next unit, u up to the layer.</p>
<p class="meta">Top-{k} labels: {label_list or "none"}</p>
<p class="meta">Each entry, left to right: {_e(columns)}; then the image, its label, the unit's position (y, x) in
the layer's map, and the activation.</p>
<div class="entries">{"".join(figures) or "<p>No image activates this unit.</p>"}</div>
{_featurevis_section(unit, featurevis)}<h2>Per-image maximum</h2>
{_histogram(unit, images, k)}"""
    return _page(f"{layer.alias or layer.name}/{unit.channel}: microscope", "../", body)


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { position: sticky; top: 0; z-index: 1; background: #333; color: #eee; padding: .4em 1em; display: flex;
  gap: 1.5em; align-items: center; }
header a { color: #fff; font-weight: bold; text-decoration: none; }
#jump input { width: 12em; } #jump-error { color: #fbb; }
main { padding: 0 1em 2em; } h1 { font-size: 1.4em; margin: .5em 0 .2em; } h2 { font-size: 1.1em; }
.meta { color: #555; } code { font-size: .85em; word-break: break-all; }
.crumbs { margin-top: .6em; } .links { margin-left: 2em; } .links a, .links span { margin-right: 1em; }
table.layers { border-collapse: collapse; } .layers td, .layers th { border-bottom: 1px solid #ddd;
  padding: .3em .6em; text-align: left; vertical-align: middle; }
img.mosaic { width: 96px; height: 96px; image-rendering: pixelated; }
.tiles { display: flex; flex-wrap: wrap; gap: 4px; }
.tile { display: block; width: 96px; text-decoration: none; color: #222; border: 2px solid transparent;
  font-size: 11px; background: #fff; }
.tile i { display: block; width: 96px; height: 48px; background-color: #888; }
.tile b { margin: 0 .3em; } .tile small { color: #666; float: right; margin-right: .3em; }
.tile img.featurevis { display: block; float: left; margin-right: .3em; }
figure.featurevis { margin: 0; } figure.featurevis img { width: 192px; height: 192px; }
.tile.dead { border-color: #c33; } .tile.dead b { color: #c33; }
.tiles.hide-dead .tile.dead { display: none; }
.entries { display: flex; flex-wrap: wrap; gap: 10px; }
figure.entry { margin: 0; background: #fff; border: 1px solid #ddd; padding: 4px; max-width: 320px; }
img.cell { object-fit: none; image-rendering: pixelated; margin-right: 2px; }
figcaption { font-size: 12px; } .label { background: #eef; padding: 0 .3em; } .value { font-weight: bold; }
.controls .modes { margin-left: 1.5em; }
.dead-tag { color: #fff; background: #c33; font-size: .6em; padding: .1em .4em; vertical-align: middle; }
svg.histogram rect { fill: #48c; } svg.histogram .axis { stroke: #888; } svg.histogram .kth { stroke: #c33; }
svg.histogram text { font-size: 11px; fill: #444; }
"""

_JS = r"""
(function () {
  const root = document.body.dataset.root || "";
  function target(query) {
    const text = query.trim();
    if (!text) return null;
    const cut = text.search(/[\/\s#]+\d+$/);
    const name = cut < 0 ? text : text.slice(0, cut);
    const layer = SITE_LAYERS[name];
    if (!layer) throw new Error("unknown layer " + name + "; try " + Object.keys(SITE_LAYERS).slice(0, 6).join(", "));
    if (cut < 0) return root + encodeURIComponent(layer[0]) + "/index.html";
    const channel = parseInt(text.slice(cut).replace(/[\/\s#]+/, ""), 10);
    if (channel >= layer[1]) throw new Error(name + " has channels 0-" + (layer[1] - 1));
    return root + encodeURIComponent(layer[0]) + "/" + channel + ".html";
  }
  const form = document.getElementById("jump");
  const problem = document.getElementById("jump-error");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    try {
      const url = target(form.elements.q.value);
      if (url) window.location.href = url;
    } catch (error) {
      problem.textContent = error.message;
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest && event.target.closest("input, select, textarea")) return;
    const rel = {ArrowLeft: "prev", ArrowRight: "next", u: "up"}[event.key];
    const link = rel && document.querySelector('a[rel="' + rel + '"]');
    if (link) {
      event.preventDefault();
      window.location.href = link.href;
    }
  });
  const grid = document.getElementById("units");
  if (!grid) return;
  const tiles = Array.from(grid.children);
  const number = (tile, key) => tile.dataset[key] === "" ? -Infinity : parseFloat(tile.dataset[key]);
  document.getElementById("sort").addEventListener("change", function (event) {
    const key = event.target.value;
    const order = tiles.slice().sort(function (a, b) {
      if (key === "channel") return number(a, "channel") - number(b, "channel");
      return number(b, key) - number(a, key) || number(a, "channel") - number(b, "channel");
    });
    grid.append(...order);
  });
  document.getElementById("hide-dead").addEventListener("change", function (event) {
    grid.classList.toggle("hide-dead", event.target.checked);
  });
  document.querySelectorAll('input[name="mode"]').forEach(function (radio) {
    radio.addEventListener("change", function () {
      document.getElementById("sprite").textContent =
        ".tile i { background-image: url('tiles." + encodeURIComponent(radio.value) + ".jpg'); }";
    });
  });
})();
"""
