"""``deconv sanity``: do the maps depend on the weights, the unit and the class? (see deconvnet.tasks.sanity.compute)"""

from __future__ import annotations

import argparse

from . import grammar

HELP = "sanity checks: maps under weight randomization, other units and other classes"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "sanity", HELP)
    grammar.add_images_argument(parser)
    grammar.add_output_option(parser, folder=True, required=True, help="figures and sanity.json")
    grammar.add_layer_option(parser, many=False, required=True,
                             help="layer of the target (see deconv layers); logits for a class")
    grammar.add_channel_option(parser, required=True, many=False, top=1, all=False,
                               help="channel (its strongest unit on each image), a class name or index at logits, "
                                    "or top1 (each image's top-1 class)")
    grammar.add_mode_option(parser, many=True, default=list(grammar.MODES),
                            help="comma-separated modes (default deconvnet,guided,backprop)")
    parser.add_argument("--steps", choices=("auto", "layer", "block"), default="auto",
                        help="randomize one layer per step, or one residual block/stage per step; auto (default): "
                             "layers up to 30 steps, blocks beyond")
    parser.add_argument("--no-independent", dest="independently", action="store_false",
                        help="skip the independent randomization (one step at a time): half the work")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the re-initializations and random picks (default 0)")
    # The first 16 images decode in a blink and the maps are computed on the CPU, so no --workers, no --device.
    grammar.add_dataset_options(parser, batch_size=8, workers=None, limit=16, takes_device=False)
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.sanity.files import sanity

    channel = "top1" if args.channel.top else args.channel.single
    report = sanity(args.images, args.output, layer=args.layer, channel=channel, model=args.model,
                    weights=args.weights, modes=args.mode, grouping=args.steps, seed=args.seed,
                    independently=args.independently, **grammar.dataset_keywords(sanity, args, "sanity"))
    result = report.result
    print(f"{result.model} {result.layer}{f' ({result.alias})' if result.alias else ''}: {len(result.images)} images, "
          f"{len(result.steps)} randomization steps ({result.grouping}), {result.seconds:.0f}s")
    for line in result.summary():
        print(line)
    if result.inactive:
        print(f"note: the target is not active on {len(result.inactive)} of the {len(result.images)} images "
              f"(activation 0), so its maps there are empty and left out; try another channel or other images")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable files")
    print(f"wrote {', '.join(str(path) for path in report.outputs)}")
    return 0
