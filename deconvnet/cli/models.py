"""``deconv models``: the known models."""

from __future__ import annotations

import argparse

from . import grammar

HELP = "list the known models"


def add_parser(commands) -> None:
    grammar.add_command(commands, "models", HELP)


def run(args: argparse.Namespace) -> int:
    from ..models import MODELS

    width = max(map(len, MODELS))
    for name, spec in MODELS.items():
        print(f"{name.ljust(width)}  {spec.description}")
    return 0
