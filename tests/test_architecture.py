"""The package's layering: the engine is self-contained, each layer imports only those below it, no task
imports another, and no import circle (issues 17 and 25)."""

from __future__ import annotations

import ast
from pathlib import Path

import deconvnet

PACKAGE = Path(deconvnet.__file__).parent

# Each layer imports only the layers below it (and itself); the top package's __init__ is the highest.
FLOORS = ("errors", "fileio", "engine", "models", "channels", "dataset", "render", "featurevis", "tasks", "serve",
          "cli", "")


def _module_name(path: Path, root: Path) -> str:
    """``deconvnet/tasks/top9/sheets.py`` -> ``deconvnet.tasks.top9.sheets`` (a package is its __init__)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path, root: Path) -> str:
    name = _module_name(path, root)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _absolute(package: str, module: str | None, level: int) -> str:
    if not level:
        return module or ""
    base = package.split(".")[: len(package.split(".")) - level + 1]
    return ".".join(base + ([module] if module else []))


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _imports(path: Path, package: str, *, top_level_only: bool = False, modules: set[str] | None = None) -> set[str]:
    """The modules a file imports, as absolute names: import statements (at any depth, or only those
    that run when the module loads), ``import_module("literal", __name__)`` calls, and the values of
    the tables handed to ``lazy_names`` (PEP 562 ``__getattr__`` tables: name -> submodule). Given the
    package's ``modules``, ``from X import y`` names X.y alone when that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    nodes: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if top_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                nodes.extend(child.orelse)
                continue
            nodes.append(child)
            visit(child)

    visit(tree)
    names: set[str] = set()
    tables: dict[str, ast.Dict] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(package, node.module, node.level)
            # `from .. import errors` imports a module by its alias's name
            submodules = {f"{module}.{alias.name}" for alias in node.names}
            if modules is None:
                names.update({module} | submodules)
            else:
                names.update(name if name in modules else module for name in submodules)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            tables.update({target.id: node.value for target in node.targets if isinstance(target, ast.Name)})
    for node in nodes:
        if not isinstance(node, ast.Call):
            continue
        called = ast.unparse(node.func).rpartition(".")[2]
        if called == "import_module" and node.args and (text := _string(node.args[0])) is not None:
            level = len(text) - len(text.lstrip("."))
            names.add(_absolute(package, text.lstrip(".") or None, level) if level else text)
        elif called == "lazy_names" and len(node.args) == 2:
            owner = _string(node.args[0]) or package  # lazy_names(__name__, ...) or a package named outright
            table = tables.get(node.args[1].id) if isinstance(node.args[1], ast.Name) else node.args[1]
            values = [_string(value) for value in table.values] if isinstance(table, ast.Dict) else []
            names.update(f"{owner}.{value}" for value in values if value)
    return names


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module that a file imports, at any depth of the file (functions included), as absolute names."""
    return _imports(path, package)


def _floor(module: str, top: str = "deconvnet") -> int | None:
    """The layer of a module of the package (None: not the package's)."""
    if module != top and not module.startswith(top + "."):
        return None
    first = module.removeprefix(top).lstrip(".").split(".")[0]
    return FLOORS.index(first) if first in FLOORS else None


def _existing(name: str, modules: set[str]) -> str | None:
    """The package module an imported name refers to: itself, or the module holding the imported attribute."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _upward_imports(root: Path) -> dict[str, set[str]]:
    """Per module of the package at ``root``, the modules of a higher layer that it imports."""
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(path, root) for path in files}
    found: dict[str, set[str]] = {}
    for path in files:
        module = _module_name(path, root)
        own = _floor(module, root.name)
        for name in _imports(path, _package_of(path, root), modules=modules):
            target = _existing(name, modules)
            floor = _floor(target, root.name) if target else None
            if own is not None and floor is not None and floor > own:
                found.setdefault(module, set()).add(target)
    return found


def _import_circles(root: Path) -> list[list[str]]:
    """Circles of imports that run when modules load (function-level and TYPE_CHECKING imports left out)."""
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(path, root) for path in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        module = _module_name(path, root)
        targets = {_existing(name, modules) for name in _imports(path, _package_of(path, root), top_level_only=True,
                                                          modules=modules)}
        # a package's own __init__ is loaded before its submodules: not an edge of a circle
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    circles, state = [], {}  # state: 1 on the current path, 2 done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                walk(target, path + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return circles


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


def test_every_layer_imports_only_the_layers_below_it():
    assert len(list(PACKAGE.rglob("*.py"))) >= 100  # the walk found the package
    order = ", ".join(FLOORS[:-1])
    assert _upward_imports(PACKAGE) == {}, f"imports upward (layers, lowest first: {order}, then deconvnet/__init__)"


def test_no_import_circle():
    assert _import_circles(PACKAGE) == []


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "deconvnet"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
        for parent in (root / name).parents:
            if parent != root and root in parent.parents:
                (parent / "__init__.py").touch()
    return root


def test_the_floor_check_catches_statements_strings_and_lazy_tables(tmp_path):
    root = _fake_package(tmp_path, {
        "errors.py": "",
        "engine/mirror.py": "from ..errors import DeconvError\nfrom ..render import to_display\n",
        "models/loading.py": "from importlib import import_module\ndef f():\n    import_module('deconvnet.tasks.x')\n",
        "dataset/__init__.py": "from importlib import import_module\n"
                               "def g():\n    return import_module('..cli', __name__)\n",
        "render/__init__.py": "from ..engine.lazy import lazy_names\n_LAZY = {'top9': 'tasks_view'}\n"
                              "__getattr__ = lazy_names(__name__, _LAZY)\n",
        "render/tasks_view.py": "",
        "featurevis/__init__.py": "from ..engine.lazy import lazy_names\n"
                                  "__getattr__ = lazy_names('deconvnet.serve', {'Site': 'site'})\n",
        "render/figures.py": "import deconvnet\n",
        "engine/lazy.py": "", "tasks/x.py": "", "cli/__init__.py": "", "serve/site.py": "",
    })
    found = _upward_imports(root)
    assert found == {"deconvnet.engine.mirror": {"deconvnet.render"},
                     "deconvnet.models.loading": {"deconvnet.tasks.x"},
                     "deconvnet.dataset": {"deconvnet.cli"},
                     "deconvnet.featurevis": {"deconvnet.serve.site"},
                     "deconvnet.render.figures": {"deconvnet"}}, found
    assert "deconvnet.render.tasks_view" in _imports(root / "render/__init__.py", "deconvnet.render")


def test_the_circle_check_catches_one_and_lets_function_imports_pass(tmp_path):
    root = _fake_package(tmp_path, {
        "dataset/images.py": "from .imageset import expand\n",
        "dataset/imageset.py": "from ..models.transforms import to_rgb\n",
        "models/transforms.py": "from ..dataset.images import open_image\n",
        "models/registry.py": "from .loading import load\n",
        "models/loading.py": "def load():\n    from .registry import MODELS\n",
        "models/__init__.py": "from .registry import MODELS\nfrom typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from ..dataset.images import open_image\n",
    })
    assert _import_circles(root) == [["deconvnet.dataset.images", "deconvnet.dataset.imageset",
                                      "deconvnet.models.transforms", "deconvnet.dataset.images"]]
