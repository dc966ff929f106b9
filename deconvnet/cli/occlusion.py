"""``deconv occlusion``: slide a grey square over the image and map what it changes (the paper's Fig. 7)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import grammar

HELP = "slide a grey square over the image and map what it changes (Fig. 7)"
# The API's defaults (deconvnet.tasks.occlusion.DEFAULT_*), here so that parsing imports no torch;
# tests/test_startup.py checks that they agree.
OCCLUSION_SIZE, OCCLUSION_STRIDE, OCCLUSION_BATCH_SIZE = 48, 16, 16


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "occlusion", HELP)
    parser.add_argument("image", help="an image file")
    grammar.add_layer_option(parser, many=False, help="layer of the unit to watch (see deconv layers)")
    grammar.add_channel_option(parser, many=False, names=False, top=False, all=False,
                               help="channel to watch: its strongest unit on the image")
    parser.add_argument("--class", dest="target_class", metavar="NAME_OR_INDEX", type=grammar.class_name_or_index,
                        help="map a classifier's probability for this class (name or index) instead")
    parser.add_argument("--measure", choices=("unit", "total"),
                        help="for a channel: the strongest unit's activation (unit, default) or the map's sum (total)")
    parser.add_argument("--size", type=int, default=OCCLUSION_SIZE,
                        help=f"side of the grey square in pixels (default {OCCLUSION_SIZE})")
    parser.add_argument("--stride", type=int, default=OCCLUSION_STRIDE,
                        help=f"step between its positions in pixels (default {OCCLUSION_STRIDE})")
    grammar.add_batch_size_option(parser, default=OCCLUSION_BATCH_SIZE, help="occluded images per forward pass")
    grammar.add_output_option(parser, folder=False, help="default <image>_occlusion_<layer>_c<channel>.png "
                                                         "or ..._class_<class>.png")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.occlusion import describe, occlusion

    channel = None if args.channel is None else args.channel.single
    stem = Path(args.image).stem
    default = (f"{stem}_occlusion_class_{grammar.safe_name(args.target_class)}.png" if args.target_class is not None
               else f"{stem}_occlusion_{grammar.safe_name(args.layer)}_c{channel}.png")
    done = occlusion(args.image, grammar.figure_output(args.output, default), layer=args.layer, channel=channel,
                     target_class=args.target_class, measure=args.measure, model=args.model, weights=args.weights,
                     size=args.size, stride=args.stride, batch_size=args.batch_size)
    result = done.result
    rows, cols = result.grid.shape
    top, left, height, width = result.most_affected
    drop = result.baseline - result.most_affected_value
    print(f"{done.model} {describe(result, args.layer, done.class_name)}: baseline {result.baseline:.4g}")
    print(f"{rows * cols} positions ({rows}x{cols}) of a {result.grid.size}x{result.grid.size} grey square, "
          f"stride {result.grid.stride}, in {result.seconds:.1f}s")
    print(f"most affected: the square at (top={top}, left={left}, {height}x{width}) lowers it to "
          f"{result.most_affected_value:.4g} (drop {drop:.4g})")
    if drop <= 0:
        print("note: no occluder position lowers the value; try a smaller --stride or a larger --size")
    print(f"wrote {done.output}")
    return 0
