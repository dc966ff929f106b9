"""The ``deconv`` command: parse arguments, call the API, report. Nothing else lives here.

One module per command (``deconvnet/cli/<command>.py``: ``HELP``, ``add_parser(commands)``
with argparse only, ``run(args) -> exit status`` importing the API it calls); the grammar they
share, channels, layers, modes, numbers and outputs, is ``deconvnet/cli/grammar.py``.

Example:
    >>> from deconvnet.cli import build_parser
    >>> args = build_parser().parse_args(["top9", "photos/", "-o", "out", "--layer", "conv4_3,conv5_3"])
    >>> args.command, args.layer, args.channel.all
    ('top9', ['conv4_3', 'conv5_3'], True)
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Sequence

from ..errors import EXIT_FAILED, EXIT_USAGE, DeconvError, exit_status
from .grammar import DEFAULT_MODEL, MODES, Parser
from .occlusion import OCCLUSION_BATCH_SIZE, OCCLUSION_SIZE, OCCLUSION_STRIDE

__all__ = ["COMMANDS", "DEFAULT_MODEL", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "MODES",
           "OCCLUSION_BATCH_SIZE", "OCCLUSION_SIZE", "OCCLUSION_STRIDE", "build_parser", "exit_status", "main"]

EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_STATUSES = f"""exit status:
  0    done
  {EXIT_FAILED}    a file could not be written or read (disk full, I/O error): the message names the file
  {EXIT_USAGE}    bad input: an unknown option, layer or channel, a missing or unreadable input, an
       output path that cannot be created or written (checked before any work) or a folder in
       use by another run
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); re-run the same command to resume"""

GRAMMAR = """the same in every command that takes them:
  --channel   12 | 12,40,7 | 0-15,40 | all | a class name (tabby) | top8 (strongest here); alias --channels
  --layer     conv5_3, or several: --layer conv4_3,conv5_3 or --layer conv4_3 --layer conv5_3; alias --layers
  --mode      deconvnet | guided | backprop, or a list: deconvnet,guided,backprop; alias --modes
  -o          a folder, or a figure file; missing folders are created
  --device cpu|cuda[:N]   --batch-size N   --workers N   --limit N|all   --model NAME   --weights FILE|random"""

# The commands, grouped as `deconv --help` lists them; each is the module deconvnet.cli.<name>.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("single image", ("visualize", "occlusion")),
    ("in the browser", ("serve",)),
    ("image set", ("top9", "microscope", "evolution", "sanity")),
    ("analyses", ("filters", "invariance", "correspondence", "featurevis")),
    ("the model", ("layers", "models")),
)


def _command(name: str):
    return import_module(f"{__name__}.{name}")


def _command_list() -> str:
    width = max(len(name) for _, names in COMMANDS for name in names)
    lines = ["commands (deconv COMMAND --help for each):"]
    for group, names in COMMANDS:
        lines.append(f"  {group}:")
        lines.extend(f"    {name.ljust(width)}  {_command(name).HELP}" for name in names)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``deconv`` parser with every command (argparse only: no torch is imported)."""
    parser = Parser(prog="deconv", description="See what a CNN's units respond to (Zeiler & Fergus deconvnet).\n\n"
                    + _command_list(), epilog=f"{GRAMMAR}\n\n{EXIT_STATUSES}",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND",
                                     help="one of the commands above")
    for _, names in COMMANDS:
        for name in names:
            _command(name).add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deconv`` with ``argv`` (default: the command line) and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _command(args.command).run(args)
    except KeyboardInterrupt:
        print("deconv: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DeconvError, OSError) as error:
        print(f"deconv: error: {error}", file=sys.stderr)
        return exit_status(error)
