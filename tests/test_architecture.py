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


def _cross_task_imports(tasks: Path, prefix: str = "deconvnet.tasks") -> dict[str, set[str]]:
    """Per file under ``tasks``, the other tasks it imports: a task is a sub-package or a module of
    ``tasks`` (``top9/``, ``evolution.py``); ``common`` is the library every task may import."""
    found: dict[str, set[str]] = {}
    for path in sorted(tasks.rglob("*.py")):
        relative = path.relative_to(tasks)
        if relative.parts == ("__init__.py",):  # the package's own table of contents
            continue
        task = relative.parts[0].removesuffix(".py")
        for name in _imported_modules(path, ".".join([prefix, *relative.parts[:-1]])):
            if name.startswith(prefix + "."):
                other = name[len(prefix) + 1:].split(".")[0]
                if other not in (task, "common"):
                    found.setdefault(relative.as_posix(), set()).add(name)
    return found


def test_no_task_imports_another_task():
    tasks = PACKAGE / "tasks"
    assert len(list(tasks.rglob("*.py"))) >= 30  # the walk found the tasks
    assert _cross_task_imports(tasks) == {}, "a task imports another task: share it through deconvnet.tasks.common"


def test_the_cross_task_check_catches_one(tmp_path):
    tasks = tmp_path / "tasks"
    (tasks / "top9").mkdir(parents=True)
    (tasks / "top9" / "sheets.py").write_text("from . import gallery\nfrom ..common import project_channel\n"
                                              "from ...render import to_display\n")
    (tasks / "microscope").mkdir()
    (tasks / "microscope" / "build.py").write_text("def f():\n    from ..top9.sheets import folder_names\n")
    (tasks / "evolution.py").write_text("from .common import x\nfrom . import occlusion\n")
    assert _cross_task_imports(tasks) == {
        "microscope/build.py": {"deconvnet.tasks.top9.sheets", "deconvnet.tasks.top9.sheets.folder_names"},
        "evolution.py": {"deconvnet.tasks.occlusion"}}
