"""``deconv correspondence``: how consistently a layer reacts when the same part is hidden (Fig. 8, Table 1).

Occlude each named part (grey) in every image and measure, per layer, how alike the sign patterns of
the feature changes are across images: Delta, the mean Hamming distance over image pairs (lower:
more consistent). Boxes of the same sizes at random positions give the control row. Writes
OUT/correspondence.json and OUT/correspondence.png.
"""

from __future__ import annotations

import argparse

from . import grammar

HELP = "part correspondence: Delta per part and layer, with a random control (Table 1)"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "correspondence", HELP, grammar.details(__doc__))
    parser.add_argument("parts", help='JSON file: {"dog1.jpg": {"left eye": [x0, y0, x1, y1], ...}, ...} in image '
                                      "pixels (x1, y1 exclusive)")
    parser.add_argument("--images", help="folder the image names are relative to (default: the part file's folder)")
    grammar.add_layer_option(parser, many=True, required=True)
    grammar.add_output_option(parser, folder=True, default="correspondence", help="default: correspondence")
    parser.add_argument("--repeats", type=int, default=5, help="random boxes per part and image (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random boxes (default 0)")
    grammar.add_batch_size_option(parser, default=16, help="occluded images per forward pass")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.correspondence import correspondence, format_table

    done = correspondence(args.parts, args.output, layers=args.layer, images=args.images, model=args.model,
                          weights=args.weights, repeats=args.repeats, seed=args.seed, batch_size=args.batch_size)
    print(f"{done.model}: {len(done.images)} images, {len(done.result.parts)} parts, "
          f"{len(done.result.layers)} layers in {done.result.seconds:.1f}s")
    print(format_table(done.result))
    print(f"wrote {done.results} and {done.figure}")
    return 0
