"""``deconv evolution``: each channel's strongest activation across training checkpoints (Fig. 4)."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    from ..cli import _add_model_options, _mode

    parser = commands.add_parser(
        "evolution", help="how features evolve over training: the strongest activation per checkpoint (Fig. 4)",
        description="For each checkpoint (in training order) and each chosen channel of a layer: the channel's "
                    "strongest activation over the images, projected to pixels and cropped to its receptive field. "
                    "Rows are channels, columns checkpoints; a red frame marks a cell whose winning image changed. "
                    "Writes OUT/evolution.json and OUT/evolution.png; each checkpoint's scan resumes after Ctrl-C.")
    parser.add_argument("checkpoints", help="a folder of checkpoints (.safetensors or .pt state dicts, sorted "
                                            "naturally by name) or a text file listing them in training order")
    parser.add_argument("images", help="a folder of images (searched recursively) or a text file of paths")
    parser.add_argument("--layer", required=True, help="layer name or alias (see deconv layers)")
    parser.add_argument("--channels", default="0-7", help="e.g. 0-7,12 or all (default 0-7)")
    parser.add_argument("-o", "--output", default="evolution", help="output folder (default: evolution)")
    parser.add_argument("--mode", type=_mode, default="deconvnet", help="deconvnet (default), guided or backprop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="image-decoding processes (default 0: in process)")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--restart", action="store_true", help="discard the scans of an earlier run")
    _add_model_options(parser)
    parser._option_string_actions["--weights"].help = "not used: the checkpoints are the weights"


def run(args: argparse.Namespace) -> int:
    from ..errors import DeconvError
    from ..tasks.evolution import evolution

    if args.weights is not None:
        raise DeconvError("evolution takes its weights from the checkpoints; drop --weights")
    done = evolution(args.checkpoints, args.images, args.output, layer=args.layer, channels=args.channels,
                     model=args.model, mode=args.mode, batch_size=args.batch_size, workers=args.workers,
                     limit=args.limit, device=args.device, restart=args.restart)
    changes = sum(w.changed for column in done.winners for w in column.values())
    print(f"{done.model} {done.layer}: {len(done.channels)} channels over {done.images} images at "
          f"{len(done.checkpoints)} checkpoints; the winning image changed {changes} times")
    print(f"wrote {done.results} and {done.figure}")
    return 0
