"""A static page to browse a top-9 run: one section per layer, one figure per channel.

The page has its CSS inline and loads nothing from the network, so it opens offline
from the output folder. It links only to files that exist when it is written.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

from ...dataset.results import Entry, ScanResults
from ...fileio import write_text_atomic

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; background: #fafafa; }
header { position: sticky; top: 0; background: #fafafa; padding: .6em 0; border-bottom: 1px solid #ddd; }
h1 { font-size: 1.3em; margin: .2em 0; } h2 { margin-top: 1.5em; }
nav a { margin-right: 1em; } .meta { color: #666; font-size: .9em; }
.mosaic img { max-width: 100%; border: 1px solid #ddd; }
.channels { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1em; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: .5em; }
figure img { width: 100%; image-rendering: pixelated; }
figcaption b { font-size: 1.05em; } ol { margin: .3em 0; padding-left: 1.6em; font-size: .85em; }
li span { color: #666; } .missing { color: #a00; }
"""


def _url(out_dir: Path, path: Path) -> str | None:
    """A relative, percent-encoded link to ``path`` if it exists, else None."""
    if not path.is_file():
        return None
    return quote(path.relative_to(out_dir).as_posix())


def _channel_figure(out_dir: Path, folder: Path, channel: int, entries: list[Entry], anchor: str) -> str:
    link = _url(out_dir, folder / f"channel_{channel:04d}.png")
    names = "".join(
        f"<li>{html.escape(e.image)} <span>{e.value:.4g}"
        + ("" if e.position is None else f" at ({e.position[0]}, {e.position[1]})") + "</span></li>"
        for e in entries
    )
    picture = (f'<a href="{link}"><img loading="lazy" src="{link}" alt="channel {channel}"></a>' if link
               else '<p class="missing">not rendered</p>')
    listing = f"<details open><summary>{len(entries)} images</summary><ol>{names}</ol></details>" if entries else (
        "<p class='missing'>no images</p>")
    return f'<figure id="{anchor}">{picture}<figcaption><b>channel {channel}</b>{listing}</figcaption></figure>'


def write_gallery(out_dir: Path, results: ScanResults, folders: dict[str, Path], *, images_root: str = "",
                  mosaic_channels: int = 64) -> Path:
    """Write ``out_dir/index.html`` for ``results`` (what top9.json holds).

    ``folders`` maps each layer (as given) to its output folder under ``out_dir``; each layer's
    mosaic shows its first ``mosaic_channels`` channels.
    """
    out_dir = Path(out_dir)
    sections, links = [], []
    for number, (layer, table) in enumerate(results.layers.items()):
        channels = table.channels
        folder = folders[layer]
        anchor = f"layer-{number}"
        links.append(f'<a href="#{anchor}">{html.escape(layer)}</a>')
        mosaic = _url(out_dir, folder / "mosaic.png")
        parts = [f'<section id="{anchor}"><h2>{html.escape(layer)} '
                 f'<span class="meta">{len(channels)} channels</span></h2>']
        if mosaic:
            shown = f"the first {mosaic_channels}" if len(channels) > mosaic_channels else "all"
            parts.append(f'<p class="mosaic"><a href="{mosaic}"><img src="{mosaic}" alt="mosaic of '
                         f'{html.escape(layer)}"></a><br><span class="meta">mosaic of {shown} channels</span></p>')
        parts.append('<div class="channels">')
        parts += [_channel_figure(out_dir, folder, channel, entries, f"{anchor}-ch{channel}")
                  for channel, entries in channels.items()]
        parts.append("</div></section>")
        sections.append("".join(parts))
    weights = results.weights_sha256
    meta = (f"model {html.escape(str(results.model))}"
            + (f" (weights sha256 {html.escape(weights[:12])}…)" if weights else "")
            + f" · mode {html.escape(str(results.mode))} · {results.images} images"
            + (f" from {html.escape(images_root)}" if images_root else ""))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Top-9 activations: {html.escape(str(results.model))}</title>
<style>{_CSS}</style></head>
<body><header><h1>Top-9 activations</h1><p class="meta">{meta}</p>
<p class="meta">Each sheet: the deconvnet projections of a channel's strongest activations (left),
beside the image patches that caused them (right), best first, row by row.</p>
<nav>{''.join(links)}</nav></header>
{''.join(sections)}
</body></html>
"""
    return write_text_atomic(out_dir / "index.html", page)
