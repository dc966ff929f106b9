"""The ``deconv`` command: parse arguments, call the API, report. Nothing else lives here."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from .errors import EXIT_FAILED, EXIT_USAGE, DeconvError, exit_status

# Building the parser imports nothing heavy, so `deconv --help` does not wait for torch. These
# defaults are the API's own (deconvnet.models.DEFAULT_MODEL, deconvnet.tasks.occlusion.DEFAULT_*, the
# modes of deconvnet.engine.relu.MODES); tests/test_startup.py checks that they agree.
DEFAULT_MODEL = "vgg16-hed"
MODES = ("deconvnet", "guided", "backprop")
OCCLUSION_SIZE, OCCLUSION_STRIDE, OCCLUSION_BATCH_SIZE = 48, 16, 16

EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_STATUSES = f"""exit status:
  0    done
  {EXIT_FAILED}    a file could not be written or read (disk full, I/O error): the message names the file
  {EXIT_USAGE}    bad input: an unknown option, layer or channel, a missing or unreadable input, an
       output folder that does not exist, is not writable (checked before any work) or is in use
       by another run
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); re-run the same command to resume"""

# Commands that live in their own module under deconvnet/commands/: each module defines
# add_parser(commands) (argparse only, no heavy imports) and run(args) -> exit status.
COMMAND_MODULES: tuple[str, ...] = (
    "correspondence", "evolution", "filters", "invariance", "microscope", "sanity", "serve",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"deconv: error: {message} (see deconv {self.prog.split()[-1]} --help)\n")


def _position(text: str) -> tuple[int, int]:
    try:
        y, x = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Y,X (two integers), received {text!r}") from None
    return y, x


def _safe(name: str) -> str:
    """A layer or class name as part of a default file name ('layer1.0.relu:2' -> 'layer1.0.relu_2')."""
    return re.sub(r"[^\w.-]+", "_", str(name))


def _class(text: str) -> int | str:
    """An index, or a class name for a classifier's output layer."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _mode(text: str) -> str:
    if text not in MODES:
        raise argparse.ArgumentTypeError(f"unknown mode {text!r}: expected one of {', '.join(MODES)}")
    return text


def _modes(text: str) -> list[str]:
    """One mode or a comma-separated list ('deconvnet,guided')."""
    return [_mode(part.strip()) for part in text.split(",")]


def _channels(text: str) -> list[int | str]:
    """One channel or a comma-separated list ('12,40,7'); class names allowed."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected a channel or a list such as 12,40,7, received {text!r}")
    return [_class(part) for part in parts]


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, received {text!r}")
    return int(text)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model name (default {DEFAULT_MODEL}; see deconv models)")
    parser.add_argument("--weights", help="a local state dict (.safetensors or .pt), or 'random'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deconv", description="See what a CNN's units respond to (Zeiler & Fergus deconvnet).",
                     epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    visualize = commands.add_parser(
        "visualize", help="project units of a layer back to pixels, as a figure (both rules; top channels)")
    visualize.add_argument("image", help="an image file")
    visualize.add_argument("--layer", required=True, help="layer name or alias (see deconv layers)")
    visualize.add_argument("--channel", type=_channels,
                           help="channel, or a list such as 12,40,7 (a class name at a classifier's output); "
                                "default: the --top channels that fire most on this image")
    visualize.add_argument("--top", type=_positive, default=8,
                           help="without --channel: how many of the strongest channels to draw (default 8)")
    visualize.add_argument("--position", type=_position, help="Y,X in the layer's map (default: strongest)")
    visualize.add_argument("--mode", type=_modes,
                           help="deconvnet, guided or backprop, or several (deconvnet,guided,backprop) "
                                "(default: deconvnet and guided side by side)")
    visualize.add_argument("--percentile", type=float, default=99.5,
                           help="clip the projection's display at this percentile of |value| (default 99.5; 100: none)")
    visualize.add_argument("-o", "--output",
                           help="figure file (default: <image>_<layer>_c<channel>.png, or ..._top<N>.png)")
    _add_model_options(visualize)

    layers = commands.add_parser("layers", help="list a model's layers with shapes and receptive fields")
    layers.add_argument("--size", type=int, help="input side in pixels (default: the model's)")
    _add_model_options(layers)

    commands.add_parser("models", help="list the known models")

    top9 = commands.add_parser("top9", help="the 9 images that activate each channel most, projected (Fig. 2)")
    top9.add_argument("images", help="a folder of images (searched recursively) or a text file of paths")
    top9.add_argument("-o", "--output", required=True, help="output folder")
    top9.add_argument("--layer", action="append", required=True, help="layer (repeat for several)")
    top9.add_argument("--channels", default="all", help="e.g. 0-15,40 or all (default)")
    top9.add_argument("--k", type=int, default=9, help="images per channel (default 9)")
    top9.add_argument("--mode", type=_mode, default="deconvnet", help="deconvnet (default), guided or backprop")
    top9.add_argument("--batch-size", type=int, default=32)
    top9.add_argument("--workers", type=int, default=2, help="image-decoding processes (default 2)")
    top9.add_argument("--limit", type=int, help="use only the first N images")
    top9.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    top9.add_argument("--restart", action="store_true", help="discard a checkpoint from an earlier run")
    _add_model_options(top9)

    occlusion = commands.add_parser("occlusion",
                                    help="slide a grey square over the image and map what it changes (Fig. 7)")
    occlusion.add_argument("image", help="an image file")
    occlusion.add_argument("--layer", help="layer of the unit to watch (see deconv layers)")
    occlusion.add_argument("--channel", type=int, help="channel to watch: its strongest unit on the image")
    occlusion.add_argument("--class", dest="target_class", metavar="NAME_OR_INDEX",
                           help="map a classifier's probability for this class (name or index) instead")
    occlusion.add_argument("--measure", choices=("unit", "total"),
                           help="for a channel: the strongest unit's activation (unit, default) "
                                "or the map's sum (total)")
    occlusion.add_argument("--size", type=int, default=OCCLUSION_SIZE,
                           help=f"side of the grey square in pixels (default {OCCLUSION_SIZE})")
    occlusion.add_argument("--stride", type=int, default=OCCLUSION_STRIDE,
                           help=f"step between its positions in pixels (default {OCCLUSION_STRIDE})")
    occlusion.add_argument("--batch-size", type=int, default=OCCLUSION_BATCH_SIZE,
                           help=f"occluded images per forward pass (default {OCCLUSION_BATCH_SIZE})")
    occlusion.add_argument("-o", "--output", help="figure file (default: <image>_occlusion_<layer>_c<channel>.png "
                                                  "or ..._class_<class>.png)")
    _add_model_options(occlusion)

    for name in COMMAND_MODULES:
        _command_module(name).add_parser(commands)
    return parser


def _command_module(name: str):
    from importlib import import_module

    return import_module(f"deconvnet.commands.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"visualize": _visualize, "layers": _layers, "models": _models, "top9": _top9,
                "occlusion": _occlusion}
    try:
        if args.command in handlers:
            return handlers[args.command](args)
        return _command_module(args.command).run(args)
    except KeyboardInterrupt:
        print("deconv: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DeconvError, OSError) as error:
        print(f"deconv: error: {error}", file=sys.stderr)
        return exit_status(error)


def _visualize(args: argparse.Namespace) -> int:
    from .tasks.visualize import visualize

    channels = args.channel
    if args.output:
        output = Path(args.output)
    else:
        which = f"top{args.top}" if channels is None else "c" + "-".join(_safe(one) for one in channels)
        output = Path(f"{Path(args.image).stem}_{_safe(args.layer)}_{which}.png")
    channel = channels[0] if channels is not None and len(channels) == 1 else channels
    result = visualize(args.image, output, layer=args.layer, channel=channel, position=args.position,
                       mode=args.mode, top=args.top, model=args.model, weights=args.weights,
                       percentile=None if args.percentile >= 100 else args.percentile)
    *others, last = result.projections
    rules = f"{', '.join(others)} and {last}" if others else last
    if len(result.units) == 1:
        unit, box = result.unit, result.box
        where = f" at (y={unit.position[0]}, x={unit.position[1]})" if unit.position else ""
        print(f"{result.model} {result.layer} channel {unit.channel}{where}: activation {unit.value:.4g}; "
              f"receptive field {box.height}x{box.width} at (top={box.top}, left={box.left}); {rules}")
    else:
        chosen = (f"the {len(result.units)} channels with the strongest activation on this image" if result.ranked
                  else f"{len(result.units)} channels")
        print(f"{result.model} {result.layer}: {chosen}; {rules}")
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


def _layers(args: argparse.Namespace) -> int:
    from .tasks.layers import layer_table

    rows = layer_table(args.model, weights=args.weights, size=args.size, tree=True)
    header = ("name", "alias", "type", "output shape", "field", "stride")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import MODELS

    width = max(map(len, MODELS))
    for name, spec in MODELS.items():
        print(f"{name.ljust(width)}  {spec.description}")
    return 0


def _top9(args: argparse.Namespace) -> int:
    from .tasks.top9.compute import top9

    summary = top9(args.images, args.output, layers=args.layer, channels=args.channels, k=args.k,
                   model=args.model, weights=args.weights, mode=args.mode, batch_size=args.batch_size,
                   workers=args.workers, limit=args.limit, device=args.device, restart=args.restart)
    print(f"scanned {summary.images} images; rendered {summary.rendered} channels "
          f"({summary.reused} already up to date); results in {summary.results_path}")
    report_skipped(summary.skipped)
    return 0


def report_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    """List the files a run skipped (the first 20), each with its reason."""
    if skipped:
        print(f"skipped {len(skipped)} files (unreadable or not images):")
        for path, reason in skipped[:20]:
            print(f"  {reason}" if path in reason else f"  {path}: {reason}")


def _occlusion(args: argparse.Namespace) -> int:
    from .tasks.occlusion import describe, occlusion

    target_class = None if args.target_class is None else _class(args.target_class)
    if args.output:
        output = Path(args.output)
    elif args.target_class is not None:
        output = Path(f"{Path(args.image).stem}_occlusion_class_{_safe(args.target_class)}.png")
    else:
        output = Path(f"{Path(args.image).stem}_occlusion_{_safe(args.layer)}_c{args.channel}.png")
    done = occlusion(args.image, output, layer=args.layer, channel=args.channel, target_class=target_class,
                     measure=args.measure, model=args.model, weights=args.weights, size=args.size,
                     stride=args.stride, batch_size=args.batch_size)
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


if __name__ == "__main__":
    sys.exit(main())
