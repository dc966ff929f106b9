"""``deconv invariance``: how features and the class probability change under translation, scale and
rotation (the paper's Fig. 5).

For each image, shift it vertically, zoom it and rotate it over a grid of parameters, and plot the
distance between the features of the original and the transformed image at two layers (divided by
the original's norm) and the probability of the image's class. Writes the figure, a JSON and a CSV
(one row per image, transformation, parameter and layer).
"""

from __future__ import annotations

import argparse

from . import grammar

HELP = "feature distance and class probability under translation, scale, rotation (Fig. 5)"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "invariance", HELP, grammar.details(__doc__))
    grammar.add_images_argument(parser, help="a list file's line may add a TAB and the image's class name or index")
    grammar.add_layer_option(parser, many=True,
                             help="layers to compare, comma-separated or repeated, one figure column each (default: "
                                  "an early and a late layer, e.g. _relu0 and _avg_pooling for efficientnet-lite0)")
    parser.add_argument("--class", dest="target_class", metavar="NAME_OR_INDEX", type=grammar.class_name_or_index,
                        help="class whose probability to plot, for images without a class in the list file "
                             "(default: the class the model predicts for the original)")
    parser.add_argument("--translations", default="-60:60:5",
                        help="vertical shifts in model input pixels, START:STOP:STEP or a list "
                             "(default -60:60:5; write a negative start as --translations=-30:30:5; positive moves "
                             "the content down)")
    parser.add_argument("--scales", default="1:1.8:0.1", help="zoom factors about the centre (default 1:1.8:0.1)")
    parser.add_argument("--rotations", default="0:350:10",
                        help="counter-clockwise angles in degrees (default 0:350:10)")
    grammar.add_output_option(parser, folder=False, help="default invariance.png; the JSON and CSV go beside it")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..dataset.imageset import expand_labelled
    from ..tasks.invariance import invariance, parse_grid

    entries = expand_labelled(args.images)  # a list file's line may name the image's class after a TAB
    if not entries:
        raise FileNotFoundError(f"no images found in {', '.join(args.images)}")
    grids = {"translation": parse_grid(args.translations), "scale": parse_grid(args.scales),
             "rotation": parse_grid(args.rotations)}
    output = grammar.figure_output(args.output, "invariance.png")
    report = invariance(entries, output, model=args.model, weights=args.weights, layers=args.layer,
                        target_class=args.target_class, grids=grids)
    curves = report.curves
    print(f"{report.model}: {len(curves)} image(s) x {sum(len(v) for v in grids.values()) + 1} inputs each, "
          f"layers {', '.join(curves[0].layers)}, in {report.seconds:.1f}s")
    for c in curves:
        parts = []
        for kind, values in c.grids.items():
            last = values[-1] if kind != "translation" else max(values, key=abs)
            i = values.index(last)
            distances = ", ".join(f"{c.relative[kind][layer][i]:.2f}" for layer in c.layers)
            prob = "" if c.probability is None else f", P {c.probability[kind][i]:.2f}"
            parts.append(f"{kind} {last:g}: {distances}{prob}")
        base = "" if c.baseline_probability is None else f" (class {c.target_class}, P {c.baseline_probability:.2f})"
        print(f"  {c.image}{base}: relative distance at the grid's end: " + "; ".join(parts))
    print(f"wrote {report.figure}, {report.json}, {report.csv}")
    return 0
