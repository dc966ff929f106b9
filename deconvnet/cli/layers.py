"""``deconv layers``: a model's layers with shapes and receptive fields."""

from __future__ import annotations

import argparse

from . import grammar

HELP = "list a model's layers with shapes and receptive fields"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "layers", HELP)
    parser.add_argument("--size", type=grammar.whole_number(1, "--size"),
                        help="input side in pixels (default: the model's)")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..tasks.layers import layer_table

    rows = layer_table(args.model, weights=args.weights, size=args.size, tree=True)
    header = ("name", "alias", "type", "output shape", "field", "stride")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
