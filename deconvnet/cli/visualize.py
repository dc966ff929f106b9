"""``deconv visualize``: project units of a layer back to pixels, as a figure."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import grammar

HELP = "project units of a layer back to pixels, as a figure (both rules; the strongest channels)"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "visualize", HELP)
    parser.add_argument("image", help="an image file")
    grammar.add_layer_option(parser, many=False, required=True)
    grammar.add_channel_option(parser, all=False,
                               help=f"{grammar.CHANNEL_FORMS} (a class name at a classifier's output); "
                                    "default: the --top channels that fire most on this image")
    parser.add_argument("--top", type=grammar.whole_number(1, "--top"), default=8,
                        help="without --channel: how many of the strongest channels to draw (default 8; "
                             "the same as --channel top8)")
    parser.add_argument("--position", type=grammar.position, help="Y,X in the layer's map (default: strongest)")
    grammar.add_mode_option(parser, many=True, default=None,
                            help="deconvnet, guided or backprop, or several (deconvnet,guided,backprop) "
                                 "(default: deconvnet and guided side by side)")
    parser.add_argument("--percentile", type=grammar.percentile, default=99.5,
                        help="clip the projection's display at this percentile of |value|, in (0, 100] "
                             "(default 99.5; 100: none)")
    grammar.add_output_option(parser, folder=False,
                              help="default <image>_<layer>_c<channel>.png, or ..._top<N>.png")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.visualize import visualize

    chosen = args.channel
    ranked = chosen is None or chosen.top is not None
    top = args.top if chosen is None or chosen.top is None else chosen.top
    channel = None if ranked else (chosen.single if len(chosen.items) == 1 else list(chosen.items))
    which = f"top{top}" if ranked else "c" + "-".join(grammar.safe_name(one) for one in chosen.items)
    output = grammar.figure_output(args.output, f"{Path(args.image).stem}_{grammar.safe_name(args.layer)}_{which}.png")
    result = visualize(args.image, output, layer=args.layer, channel=channel, position=args.position,
                       mode=args.mode, top=top, model=args.model, weights=args.weights, percentile=args.percentile)
    *others, last = result.projections
    rules = f"{', '.join(others)} and {last}" if others else last
    if len(result.units) == 1:
        unit, box = result.unit, result.box
        where = f" at (y={unit.position[0]}, x={unit.position[1]})" if unit.position else ""
        print(f"{result.model} {result.layer} channel {unit.channel}{where}: activation {unit.value:.4g}; "
              f"receptive field {box.height}x{box.width} at (top={box.top}, left={box.left}); {rules}")
    else:
        described = (f"the {len(result.units)} channels with the strongest activation on this image" if result.ranked
                     else f"{len(result.units)} channels")
        print(f"{result.model} {result.layer}: {described}; {rules}")
        last = "class" if any(result.classes) else "at (y, x)"
        print(f"  {'rank  ' if result.ranked else ''}channel  activation  {last}")
        for rank, (unit, name) in enumerate(zip(result.units, result.classes), 1):
            where = f"({unit.position[0]}, {unit.position[1]})" if unit.position else name or "-"
            print(f"  {f'{rank:>4}  ' if result.ranked else ''}{unit.channel:>7}  {unit.value:>10.4g}  {where}")
    silent = [str(unit.channel) for unit in result.units if unit.value <= 0]
    if silent:
        print(f"note: channel {', '.join(silent)} is not active on this image, so its projection is empty; "
              "try another channel or image")
    print(f"wrote {result.output}")
    return 0
