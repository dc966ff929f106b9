"""``deconv microscope``: build a browsable static site of every unit of a model's layers."""

from __future__ import annotations

import argparse

from ..cli import _add_model_options, _mode, report_skipped


def _modes(text: str) -> list[str]:
    return [_mode(part.strip()) for part in text.split(",") if part.strip()]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def add_parser(commands) -> None:
    parser = commands.add_parser("microscope", help="a static site of every unit of the chosen layers over images")
    parser.add_argument("images", help="a folder of images (searched recursively) or a text file of paths")
    parser.add_argument("-o", "--output", required=True, help="site folder (created; an existing site is extended)")
    parser.add_argument("--layers", default="all",
                        help="all (every conv and fully connected layer, default) or names/aliases: conv4_3,fc7")
    parser.add_argument("--modes", type=_modes, default=["deconvnet"],
                        help="projection rules, comma-separated: deconvnet (default), guided, backprop")
    parser.add_argument("--channels", default="all",
                        help="all (default), or e.g. 0-15,40: each layer's channels (a later build can add more)")
    parser.add_argument("--k", type=int, default=9, help="images per unit (default 9)")
    parser.add_argument("--labels", help="TSV file of file<TAB>label (default: the images' sub-folder names)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass of the scan (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="image-decoding processes (default 2)")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--restart", action="store_true", help="discard the site's results and build it again")
    _add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.microscope import microscope

    layers = "all" if args.layers.strip() == "all" else [n.strip() for n in args.layers.split(",") if n.strip()]
    summary = microscope(args.images, args.output, layers=layers, modes=args.modes, k=args.k, labels=args.labels,
                         channels=None if args.channels.strip() == "all" else args.channels,
                         model=args.model, weights=args.weights, batch_size=args.batch_size, workers=args.workers,
                         limit=args.limit, device=args.device, restart=args.restart)
    print(f"{_count(len(summary.layers), 'layer')} over {_count(summary.images, 'image')}: scanned "
          f"{_count(len(summary.scanned), 'layer')}, projected {_count(summary.projected, 'unit')}; "
          f"open {summary.site / 'index.html'}")
    report_skipped(summary.skipped)
    return 0
