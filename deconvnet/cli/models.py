"""``deconv models``: the known models."""

from __future__ import annotations

import argparse

from . import grammar

HELP = "list the known models"


def add_parser(commands) -> None:
    grammar.add_command(commands, "models", HELP)


def run(args: argparse.Namespace) -> int:
    from ..models import MODEL_FAMILIES, MODELS

    width = max(map(len, [*MODELS, *(pattern for pattern, _, _ in MODEL_FAMILIES)]))
    for name, spec in MODELS.items():
        print(f"{name.ljust(width)}  {spec.description}")
    print("\nfamilies, named with a prefix:")
    for pattern, example, description in MODEL_FAMILIES:
        print(f"{pattern.ljust(width)}  {description} (e.g. --model {example})")
    return 0
