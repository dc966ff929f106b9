"""The package's layering: the engine is self-contained (issue 17)."""

from __future__ import annotations

import ast
from pathlib import Path

import deconvnet

PACKAGE = Path(deconvnet.__file__).parent


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module that a file imports, at any depth of the file (functions included), as absolute names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from .. import errors` imports a module by its alias's name
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_engine_imports_nothing_of_the_package_but_the_errors_module():
    engine = PACKAGE / "engine"
    files = sorted(engine.glob("*.py"))
    assert len(files) >= 10  # the walk found the engine
    outside = {}
    for path in files:
        package = "deconvnet.engine"
        for name in _imported_modules(path, package):
            allowed = any(name == m or name.startswith(m + ".") for m in ("deconvnet.engine", "deconvnet.errors"))
            if name.startswith("deconvnet") and not allowed and name != "deconvnet":
                outside.setdefault(path.name, set()).add(name)
    # `from ..errors import X` reads as "deconvnet.errors" and "deconvnet.errors.X"; anything else is a leak
    assert outside == {}, f"engine modules import from the rest of the package: {outside}"


def test_the_import_parser_sees_relative_and_nested_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from ..render import x\ndef f():\n    from .graph import y\n    import deconvnet.cli\n")
    found = _imported_modules(source, "deconvnet.engine")
    assert {"deconvnet.render", "deconvnet.engine.graph", "deconvnet.cli"} <= found
