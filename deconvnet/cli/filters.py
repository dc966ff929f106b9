"""``deconv filters``: the first layer's filters, their spectra and aliasing (the paper's Fig. 6).

Draw a convolution's filters and measure, per filter, its energy in low/mid/high spatial frequencies
and the share above the Nyquist frequency of the layer's stride (aliasing). Writes the figure, a
JSON of all numbers and a CSV of the mean radial spectrum.
"""

from __future__ import annotations

import argparse

from . import grammar

HELP = "first-layer filters, their spatial frequencies and aliasing at the stride (Fig. 6)"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "filters", HELP, grammar.details(__doc__))
    grammar.add_images_argument(parser, optional=True,
                                help="optional; also report the filters that never activate on them")
    grammar.add_layer_option(parser, many=False, help="a Conv2d layer, name or alias (default: the first convolution)")
    parser.add_argument("--stride", type=int,
                        help="analyse aliasing at this stride instead of the layer's own")
    parser.add_argument("--sort", choices=("none", "rms", "aliasing", "frequency"), default="none",
                        help="grid order: as defined (default), or by descending RMS, aliasing share or mean "
                             "frequency")
    parser.add_argument("--dead-fraction", type=float, default=0.1,
                        help="a filter is dead when its RMS is below this fraction of the median (default 0.1)")
    parser.add_argument("--dft-size", type=int, help="zero-pad the kernels to this side before the DFT (default 64)")
    grammar.add_batch_size_option(parser, default=16)
    grammar.add_output_option(parser, folder=False, help="default filters_<model>_<layer>.png; the JSON and the "
                                                         "spectrum CSV go beside it")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..dataset.imageset import expand
    from ..tasks.filters import filters

    images = expand(args.images)
    if args.images and not images:
        raise FileNotFoundError(f"no images found in {', '.join(args.images)}")
    output = grammar.figure_output(
        args.output, f"filters_{grammar.safe_name(args.model)}_{grammar.safe_name(args.layer or 'first-conv')}.png")
    report = filters(output, images, model=args.model, weights=args.weights, layer=args.layer, stride=args.stride,
                     sort=args.sort, dead_fraction=args.dead_fraction, size=args.dft_size, batch_size=args.batch_size)
    s = report.summary
    layer = f"{s['layer']} ({s['alias']})" if s["alias"] else s["layer"]
    bands = ", ".join(f"{name} {value:.3f}" for name, value in s["mean_bands"].items() if value is not None)
    print(f"{s['model']} {layer}: {s['filter_count']} filters {s['kernel'][0]}x{s['kernel'][1]}, stride {s['stride']} "
          f"(Nyquist {s['nyquist']:g} cycles/pixel)")
    print(f"median aliasing share {s['median_aliasing']:.3f}; mean energy shares: {bands}")
    print(f"dead by RMS (< {s['dead_fraction']:g} x median {s['median_rms']:.4g}): {len(s['dead_by_rms'])} "
          f"{s['dead_by_rms'] if s['dead_by_rms'] else ''}".rstrip())
    if s["never_active"] is not None:
        print(f"never active over {s['images']} images: {len(s['never_active'])} "
              f"{s['never_active'] if s['never_active'] else ''}".rstrip())
    print(f"wrote {report.figure}, {report.json}, {report.csv}")
    return 0
