"""``deconv sanity``: do the maps depend on the weights, the unit and the class? (see deconvnet.tasks.sanity.compute)"""

from __future__ import annotations

import argparse

from ..cli import _add_model_options, _class, _mode


def _modes(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",") if part.strip()]
    if not modes:
        raise argparse.ArgumentTypeError("expected one or more modes, e.g. deconvnet,guided,backprop")
    return [_mode(mode) for mode in modes]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "sanity", help="sanity checks: maps under weight randomization, other units and other classes")
    parser.add_argument("images", nargs="+", help="image files, folders (searched recursively) or text files of paths")
    parser.add_argument("-o", "--output", required=True, help="output folder (figures and sanity.json)")
    parser.add_argument("--layer", required=True, help="layer of the target (see deconv layers); logits for a class")
    parser.add_argument("--channel", required=True, type=_class,
                        help="channel (its strongest unit on each image), a class name or index at logits, "
                             "or top1 (each image's top-1 class)")
    parser.add_argument("--modes", type=_modes, default=["deconvnet", "guided", "backprop"],
                        help="comma-separated modes (default deconvnet,guided,backprop)")
    parser.add_argument("--steps", choices=("auto", "layer", "block"), default="auto",
                        help="randomize one layer per step, or one residual block/stage per step; auto (default): "
                             "layers up to 30 steps, blocks beyond")
    parser.add_argument("--no-independent", dest="independently", action="store_false",
                        help="skip the independent randomization (one step at a time): half the work")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the re-initializations and random picks (default 0)")
    parser.add_argument("--limit", type=int, default=16, help="use the first N images (default 16; 0: all)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per projection (default 8)")
    _add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.sanity.files import sanity

    report = sanity(args.images, args.output, layer=args.layer, channel=args.channel, model=args.model,
                    weights=args.weights, modes=args.modes, grouping=args.steps, seed=args.seed,
                    limit=args.limit or None, batch_size=args.batch_size, independently=args.independently)
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
