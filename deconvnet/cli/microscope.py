"""``deconv microscope``: build a browsable static site of every unit of a model's layers."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import DeconvError
from . import grammar

HELP = "a static site of every unit of the chosen layers over images"
FEATUREVIS_OPTIONS = (("steps", 256, "optimization steps"), ("size", 128, "image side in pixels"),
                      ("batch", 16, "channels optimized together"))


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "microscope", HELP)
    grammar.add_images_argument(parser)
    grammar.add_output_option(parser, folder=True, required=True, help="an existing site is extended")
    grammar.add_layer_option(parser, many=True, default="all",
                             help="all (every conv and fully connected layer, default) or names/aliases, "
                                  "comma-separated or repeated: conv4_3,fc7")
    grammar.add_channel_option(parser, default="all", **grammar.DATASET_CHANNELS,
                               help=f"{grammar.CHANNEL_FORMS} (default all): a first site of a few units in "
                                    "minutes, extended later")
    grammar.add_mode_option(parser, many=True, default=["deconvnet"],
                            help="projection rules, comma-separated: deconvnet (default), guided, backprop")
    grammar.add_k_option(parser, per="unit")
    parser.add_argument("--labels", help="TSV file of file<TAB>label (default: the images' sub-folder names)")
    grammar.add_dataset_options(parser, batch_size=8, workers=2)
    parser.add_argument("--restart", action="store_true", help="discard the site's results and build it again")
    parser.add_argument("--featurevis", action="store_true",
                        help="add each unit's feature visualization (the input optimized to maximize it) to its "
                             "page and its layer's grid; resumable, batch by batch")
    for name, default, what in FEATUREVIS_OPTIONS:
        parser.add_argument(f"--featurevis-{name}", type=grammar.whole_number(1, f"--featurevis-{name}"),
                            help=f"with --featurevis: {what} (default {default})")
    grammar.add_model_options(parser)


def _featurevis_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """``featurevis=`` for the API (True, or the settings given) only when asked for: its default is none."""
    given = {name: getattr(args, f"featurevis_{name}") for name, _, _ in FEATUREVIS_OPTIONS
             if getattr(args, f"featurevis_{name}") is not None}
    if given and not args.featurevis:
        raise DeconvError(f"--featurevis-{next(iter(given))} needs --featurevis; add it, or leave the option out")
    return {"featurevis": given or True} if args.featurevis else {}


def run(args: argparse.Namespace) -> int:
    from ..tasks.microscope import microscope

    layers = "all" if args.layer in ("all", ["all"]) else args.layer
    summary = microscope(args.images, args.output, layers=layers, modes=args.mode, k=args.k, labels=args.labels,
                         model=args.model, weights=args.weights, restart=args.restart,
                         channels=grammar.api_channels(args.channel), **_featurevis_keywords(args),
                         **grammar.dataset_keywords(microscope, args, "microscope"))
    optimized = f", optimized {grammar.count(summary.optimized, 'image')}" if args.featurevis else ""
    print(f"{grammar.count(len(summary.layers), 'layer')} over {grammar.count(summary.images, 'image')}: scanned "
          f"{grammar.count(len(summary.scanned), 'layer')}, projected {grammar.count(summary.projected, 'unit')}"
          f"{optimized}; open {summary.site / 'index.html'}")
    grammar.report_skipped(summary.skipped)
    return 0
