"""``deconv top9``: the images that activate each channel most, projected (the paper's Fig. 2)."""

from __future__ import annotations

import argparse

from . import grammar

HELP = "the 9 images that activate each channel most, projected (Fig. 2)"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "top9", HELP)
    grammar.add_images_argument(parser)
    grammar.add_output_option(parser, folder=True, required=True)
    grammar.add_layer_option(parser, many=True, required=True)
    grammar.add_channel_option(parser, default="all", **grammar.DATASET_CHANNELS)
    grammar.add_k_option(parser, per="channel")
    grammar.add_mode_option(parser, many=True, default=["deconvnet"],
                            help="projection rules, comma-separated: deconvnet (default), guided, backprop; "
                                 "several: one sheet per mode in OUT/<mode>/, from one scan")
    grammar.add_dataset_options(parser, batch_size=32, workers=2)
    parser.add_argument("--restart", action="store_true", help="discard a checkpoint from an earlier run")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.top9.compute import top9

    summary = top9(args.images, args.output, layers=args.layer,
                   channels=grammar.api_channels(args.channel), k=args.k, model=args.model,
                   weights=args.weights, mode=args.mode, restart=args.restart,
                   **grammar.dataset_keywords(top9, args, "top9"))
    print(f"scanned {summary.images} images; rendered {summary.rendered} channels "
          f"({summary.reused} already up to date); results in {', '.join(map(str, summary.results_paths))}")
    grammar.report_skipped(summary.skipped)
    return 0
