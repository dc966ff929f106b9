"""The scripts (benchmarks, figure makers) name only what the package still has.

They run outside the suite, so a renamed or removed function would break them unnoticed: each
``from deconvnet... import name`` and ``import deconvnet...`` in ``scripts/`` is resolved here
against the package as it is (without running the scripts or their optional dependencies).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


def package_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for each import of the package in ``path``; name None for ``import module``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "deconvnet":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "deconvnet"]
    return found


def missing_names(path: Path) -> list[str]:
    missing = []
    for module, name in package_imports(path):
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError:
            missing.append(module)
            continue
        if name is not None and not hasattr(imported, name):
            try:  # a submodule imported by name
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module}.{name}")
    return missing


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_every_name_a_script_imports_from_the_package_exists(script):
    assert missing_names(script) == []


def test_a_removed_name_is_caught(tmp_path):
    script = tmp_path / "old.py"
    script.write_text("import deconvnet.engine\nfrom deconvnet.dataset.imageset import expand, list_everything\n"
                      "from deconvnet.no_such_module import x\n")
    assert missing_names(script) == ["deconvnet.dataset.imageset.list_everything", "deconvnet.no_such_module"]
