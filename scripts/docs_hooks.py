"""MkDocs hooks for the documentation site (``mkdocs.yml``: ``hooks: [scripts/docs_hooks.py]``).

Two things the site takes from the repository at build time instead of from copies in ``docs/``:

- ``reference/cli.md``, the CLI reference, is generated from ``deconvnet.cli.build_parser()``,
  the parser ``deconv`` itself runs, so the page cannot drift from the options;
- the figures of ``assets/`` (which the README shows too) are served as ``assets/...``, so a
  page links them as ``../assets/NAME.png`` and there is one copy of each.

``scripts/docs_doctests.py`` renders the docstrings' doctest examples as code in the API reference.

``python scripts/docs_hooks.py`` prints the generated CLI reference.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from deconvnet.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = "reference/cli.md"
HELP_WIDTH = 100
FIGURE_SUFFIXES = {".png", ".jpg", ".json"}  # the README's figures, the free photos, the sanity numbers


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of every ``deconv`` command, by name, from the top-level parser.

    >>> sorted(subcommands(build_parser()))[:3]
    ['correspondence', 'evolution', 'filters']
    """
    for action in parser._actions:  # argparse keeps the sub-parsers on their one action
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise ValueError("the parser has no sub-commands")


def _cell(text: str) -> str:
    """One line of a Markdown table cell: no pipes, and ``<image>`` shown, not read as HTML."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = ["| argument | value | help |", "| --- | --- | --- |"]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.metavar or action.dest}`"
        takes_value = action.nargs != 0
        value = ""
        if takes_value:
            metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
            value = f"`{metavar if isinstance(metavar, str) else ' '.join(metavar)}`"
            if action.nargs in ("*", "+"):
                value += " ..." if action.nargs == "+" else " (any number)"
            if action.required:
                value += " (required)"
        help_text = formatter._expand_help(action) if action.help else ""
        rows.append(f"| {names} | {value} | {_cell(help_text)} |")
    return rows


def cli_reference_markdown() -> str:
    """The CLI reference page: every command's usage and arguments, as ``deconv COMMAND --help`` gives them."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)  # argparse wraps at the terminal's width: the page must not depend on it
    try:
        return _cli_reference(build_parser())
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _cli_reference(parser: argparse.ArgumentParser) -> str:
    commands = subcommands(parser)
    lines = [
        "# CLI reference",
        "",
        "Generated from the `deconv` parser when the site is built (`scripts/docs_hooks.py`), so it",
        "always matches `deconv COMMAND --help`. The options every command shares are explained in",
        "[Options and errors](../cli.md).",
        "",
        "```text",
        parser.format_help().strip(),
        "```",
    ]
    for group, names in COMMANDS:
        for name in names:
            sub = commands[name]
            lines += ["", f"## deconv {name}", "", f"*{group}.* {_cell(sub.description or '')}", "",
                      "```text", sub.format_usage().strip(), "```", "", *_argument_rows(sub)]
    return "\n".join(lines) + "\n"


def on_files(files: Any, config: Any) -> Any:
    """MkDocs: add the generated CLI reference and the repository's figures to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, CLI_PAGE, content=cli_reference_markdown()))
    for path in sorted((ROOT / "assets").iterdir()):
        if path.suffix in FIGURE_SUFFIXES:
            files.append(File(f"assets/{path.name}", str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


if __name__ == "__main__":
    print(cli_reference_markdown(), end="")
