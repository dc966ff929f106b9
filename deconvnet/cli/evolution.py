"""``deconv evolution``: each channel's strongest activation across training checkpoints (Fig. 4).

For each checkpoint (in training order) and each chosen channel of a layer: the channel's strongest
activation over the images, projected to pixels and cropped to its receptive field. Rows are
channels, columns checkpoints; a red frame marks a cell whose winning image changed. Writes
OUT/evolution.json and OUT/evolution.png; each checkpoint's scan resumes after Ctrl-C.
"""

from __future__ import annotations

import argparse

from . import grammar

HELP = "how features evolve over training: the strongest activation per checkpoint (Fig. 4)"


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "evolution", HELP, grammar.details(__doc__))
    parser.add_argument("checkpoints", help="a folder of checkpoints (.safetensors or .pt state dicts, sorted "
                                            "naturally by name) or a text file listing them in training order")
    grammar.add_images_argument(parser)
    grammar.add_layer_option(parser, many=False, required=True)
    grammar.add_channel_option(parser, default="0-7", **grammar.DATASET_CHANNELS)
    grammar.add_output_option(parser, folder=True, default="evolution", help="default: evolution")
    grammar.add_mode_option(parser, many=False, default="deconvnet")
    grammar.add_dataset_options(parser, batch_size=32, workers=0)
    parser.add_argument("--restart", action="store_true", help="discard the scans of an earlier run")
    grammar.add_model_options(parser, weights="not used: the checkpoints are the weights")


def run(args: argparse.Namespace) -> int:
    from ..errors import DeconvError
    from ..tasks.evolution import evolution

    if args.weights is not None:
        raise DeconvError("evolution takes its weights from the checkpoints; drop --weights")
    done = evolution(args.checkpoints, args.images, args.output, layer=args.layer,
                     channels=grammar.api_channels(args.channel), model=args.model, mode=args.mode,
                     restart=args.restart,
                     **grammar.dataset_keywords(evolution, args, "evolution"))
    changes = sum(w.changed for column in done.winners for w in column.values())
    print(f"{done.model} {done.layer}: {len(done.channels)} channels over {done.images} images at "
          f"{len(done.checkpoints)} checkpoints; the winning image changed {changes} times")
    print(f"wrote {done.results} and {done.figure}")
    return 0
