"""Subcommands of ``deconv`` that live in their own module (see deconvnet.cli.COMMAND_MODULES).

Each module defines ``add_parser(commands)``, which adds its argparse sub-parser using only
argparse and the helpers in deconvnet.cli, and ``run(args) -> int``, which imports the API
it calls, calls it and prints a short report.
"""
