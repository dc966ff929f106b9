"""The documentation site (mkdocs.yml, docs/): every command has a page, in the nav, with its figure.

The pages' command lines are parsed by tests/test_cli_grammar.py; `mkdocs build --strict` (in
.ci/run) checks the links. These checks compare the site with the real parser, so a new command
without a page, or a page for a command that is gone, fails here.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

from deconvnet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _docs_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command_page(name: str) -> Path | None:
    for page in (DOCS / "commands" / f"{name}.md", DOCS / f"{name}.md"):  # featurevis.md sits at the top
        if page.exists():
            return page
    return None


def test_every_command_of_the_parser_has_a_page_with_its_command_and_a_figure():
    commands = _docs_hooks().subcommands(build_parser())
    assert {"visualize", "top9", "microscope", "serve", "layers", "models"} <= set(commands)
    for name in commands:
        page = _command_page(name)
        assert page is not None, f"deconv {name} has no page: add docs/commands/{name}.md to the nav"
        text = page.read_text()
        assert re.search(rf"^deconv {name}\b", text, re.M), f"{page} shows no `deconv {name}` command line"
        figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
        assert figures, f"{page} has no figure"
        for figure in figures:  # docs/img/ in the docs; assets/ served at the site's assets/ by the hook
            site_path = (page.parent / figure).resolve().relative_to(DOCS)
            assert (DOCS / site_path).exists() or (ROOT / site_path).exists(), f"{page}: {figure} does not exist"


def test_every_command_page_is_a_real_command_and_in_the_nav():
    commands = set(_docs_hooks().subcommands(build_parser()))
    pages = {page.stem for page in (DOCS / "commands").glob("*.md")}
    assert pages <= commands, f"pages for commands deconv does not have: {sorted(pages - commands)}"
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted(DOCS.rglob("*.md")):
        assert page.relative_to(DOCS).as_posix() in nav, f"{page} is not in mkdocs.yml's nav"


def test_the_cli_reference_lists_every_option_of_every_command():
    hooks = _docs_hooks()
    page = hooks.cli_reference_markdown()
    sections = re.split(r"^## deconv ", page, flags=re.M)[1:]
    parsers = hooks.subcommands(build_parser())
    assert sorted(section.split("\n", 1)[0] for section in sections) == sorted(parsers)
    for section in sections:
        name, body = section.split("\n", 1)
        for action in parsers[name]._actions:
            for option in [] if isinstance(action, argparse._HelpAction) else action.option_strings:
                assert f"`{option}`" in body, f"deconv {name} {option} is missing from the CLI reference"
        assert f"usage: deconv {name}" in body


def test_the_doctest_fence_keeps_the_text_and_closes_every_fence():
    spec = importlib.util.spec_from_file_location("docs_doctests", ROOT / "scripts" / "docs_doctests.py")
    if importlib.util.find_spec("griffe") is None:  # the docs extra is not installed: nothing to render
        text = (ROOT / "scripts" / "docs_doctests.py").read_text()
        assert "def fence_doctests" in text
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docstring = "Title.\n\n>>> a = [1, 2]\n>>> a[::2]\n[1]\n\nExample:\n    >>> b\n    2\nAfter."
    fenced = module.fence_doctests(docstring)
    assert [line for line in fenced.splitlines() if "```" not in line] == docstring.splitlines()
    assert fenced.count("```pycon") == 2 and fenced.count("```") == 4
    assert "    ```pycon\n    >>> b\n    2\n    ```\nAfter." in fenced
