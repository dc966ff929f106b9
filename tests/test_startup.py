"""Start-up: `import deconvnet` and `deconv --help` load only what they need."""

from __future__ import annotations

import json
import subprocess
import sys

import deconvnet
from deconvnet import cli


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_deconvnet_loads_neither_matplotlib_nor_rendering_code():
    loaded = _modules_after("import deconvnet")
    assert "deconvnet" in loaded
    assert not {"matplotlib", "deconvnet.render", "deconvnet.tasks.visualize", "torch"} & loaded
    used = _modules_after("import deconvnet; deconvnet.Deconvnet; deconvnet.load_model")  # the engine, no drawing
    assert "torch" in used and "deconvnet.engine" in used
    assert not {"matplotlib", "deconvnet.render"} & used


def test_help_loads_no_torch_and_lists_the_exit_statuses():
    loaded = _modules_after("import contextlib, io\nfrom deconvnet.cli import main\n"
                            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
                            "    main(['--help'])")
    assert "deconvnet.cli" in loaded and not {"torch", "torchvision", "matplotlib"} & loaded
    assert "deconvnet.cli.top9" in loaded and not {"deconvnet.tasks", "deconvnet.models"} & loaded  # the APIs: on use
    text = cli.build_parser().format_help()
    assert "exit status:" in text and "  1    a file could not be written" in text and "  2    bad input" in text


def test_the_public_names_are_the_api_objects():
    from deconvnet.engine import Deconvnet
    from deconvnet.tasks.visualize import visualize

    assert deconvnet.Deconvnet is Deconvnet and deconvnet.visualize is visualize and callable(deconvnet.visualize)
    assert set(deconvnet.__all__) <= set(dir(deconvnet))
    for name in deconvnet.__all__:
        assert getattr(deconvnet, name) is not None


def test_the_cli_defaults_are_the_apis():
    from deconvnet import models
    from deconvnet.engine import relu as rules
    from deconvnet.tasks import occlusion

    assert cli.DEFAULT_MODEL == models.DEFAULT_MODEL
    assert tuple(cli.MODES) == tuple(rules.MODES)
    assert (cli.OCCLUSION_SIZE, cli.OCCLUSION_STRIDE, cli.OCCLUSION_BATCH_SIZE) == (
        occlusion.DEFAULT_SIZE, occlusion.DEFAULT_STRIDE, occlusion.DEFAULT_BATCH_SIZE)


def test_checking_a_png_figure_path_does_not_import_matplotlib(tmp_path):
    path = tmp_path / "a.png"
    loaded = _modules_after(f"from deconvnet.fileio import check_figure_path\ncheck_figure_path({str(path)!r})")
    assert "deconvnet.fileio" in loaded and "matplotlib" not in loaded
