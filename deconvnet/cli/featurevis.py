"""``deconv featurevis``: the image a unit would draw, its input optimized to maximize it (Olah et al.,
"Feature Visualization", Distill 2017).

Every channel given is one image of a single batch, optimized in a Fourier basis with decorrelated
colour under random jitter, scaling and rotation; the sheet shows each with its channel and the
value it reaches. The same --seed gives the same sheet.
"""

from __future__ import annotations

import argparse

from . import grammar

HELP = "feature visualization: the input optimized to maximize a channel, unit or class (Distill 2017)"


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, received {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, received {text!r}")
    return value


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "featurevis", HELP, grammar.details(__doc__))
    grammar.add_layer_option(parser, many=False, required=True)
    grammar.add_channel_option(parser, required=True, all=False, top=False,
                               help="channels of the layer: 12, 12,40, 0-7 (or class names for --objective class)")
    parser.add_argument("--objective", choices=("channel", "neuron", "class"), default="channel",
                        help="the channel's mean (default), its centre unit, or a class logit (a layer of scores)")
    parser.add_argument("--diversity", type=_non_negative, default=0.0,
                        help="weight of the Gram-similarity penalty between the --copies of a channel (default 0)")
    parser.add_argument("--copies", type=grammar.whole_number(1, "--copies"), default=1,
                        help="images per channel (default 1; several with --diversity differ from each other)")
    parser.add_argument("--size", type=grammar.whole_number(1, "--size"), default=128,
                        help="image side in pixels (default 128)")
    parser.add_argument("--steps", type=grammar.whole_number(1, "--steps"), default=256,
                        help="optimization steps (default 256)")
    parser.add_argument("--lr", type=_positive, default=0.05, help="Adam's learning rate (default 0.05)")
    parser.add_argument("--param", choices=("fourier", "pixel"), default="fourier",
                        help="the image's parametrization: 1/f Fourier with decorrelated colour (default), or pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", type=grammar.device, default="cpu", help="cpu (default), cuda or cuda:N")
    grammar.add_output_option(parser, folder=False, help="default featurevis_<model>_<layer>.png")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..featurevis import feature_visualization
    from ..fileio import check_figure_path, save_image_atomic
    from ..models import load
    from ..render.featurevis import featurevis_sheet

    output = check_figure_path(grammar.figure_output(
        args.output, f"featurevis_{grammar.safe_name(args.model)}_{grammar.safe_name(args.layer)}.png"))
    loaded = load(args.model, weights=args.weights)
    loaded.model.to(args.device)  # this command's own copy
    fv = feature_visualization(loaded, args.layer, grammar.api_channels(args.channel), objective=args.objective,
                               size=args.size, steps=args.steps, lr=args.lr, param=args.param,
                               diversity=args.diversity, copies=args.copies, seed=args.seed, device=args.device,
                               progress=True)
    channels = [c for c in fv.channels for _ in range(fv.copies)]
    titles = [f"{fv.layer} ch {c}: {value:.3g}" for c, value in zip(channels, fv.activations.tolist())]
    save_image_atomic(output, featurevis_sheet(fv.pictures(), titles))
    values = ", ".join(f"ch {c} {v:.4g}" for c, v in zip(channels, fv.activations.tolist()))
    print(f"{loaded.name} {fv.layer}, {grammar.count(len(channels), 'image')} ({fv.objective}, "
          f"{grammar.count(args.steps, 'step')}, {args.size}px): {values}")
    print(f"wrote {output}")
    return 0
