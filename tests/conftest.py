"""Fixtures shared by the test files: the tiny top-9 network, a small model to watch, the shared photos.

Test files ask for these by name instead of importing each other. Subprocess scripts that
need the helpers get them through ``run_python`` (it puts the tests folder on their path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch and the helpers are imported inside the fixtures, so a pytest run that needs none of
# them (tests/test_suite_guards.py runs one) starts fast.

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# The third-party photos live beside the repository and never in it; DECONVNET_SAMPLES points elsewhere.
SAMPLES = Path(os.environ.get("DECONVNET_SAMPLES") or REPO.parent / "shared/data/imagenet-samples")


@pytest.fixture(autouse=True)
def cone_forward_tried_on_sight(monkeypatch):
    """The library answers a geometry's first sighting with the full forward and tries it when it
    comes back (engine/faithful.py); the tests try it at once, so that every test that projects a
    unit alone in its image exercises the cone forward and its trial."""
    import deconvnet.engine.deconvnet as engine_deconvnet
    import deconvnet.engine.faithful as faithful

    monkeypatch.setattr(faithful, "TRIAL_AFTER", 0)
    monkeypatch.setattr(engine_deconvnet, "CONE_MAX_SHARE", 1.0)  # the tests' small images: cones cover most


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shared photo folder (one per ImageNet class, MANIFEST.tsv).

    Absent: the test is skipped, except in CI (the environment variable CI is set), where
    a missing folder fails, so moving it cannot switch the real-photo checks off unnoticed.
    """
    if (SAMPLES / "MANIFEST.tsv").is_file():
        return SAMPLES
    message = f"shared photos not found at {SAMPLES}"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{message}; CI is set, so the real-photo checks must run (set DECONVNET_SAMPLES)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def tiny() -> SimpleNamespace:
    """The top-9 tests' integer-weighted network and image folder (see top9_tiny.py).

    ``tiny.model(head=False)`` -> LoadedModel, ``tiny.make_images(root)`` -> readable paths,
    ``tiny.SIZE``, ``tiny.TRANSFORM``.
    """
    import top9_tiny

    return SimpleNamespace(model=top9_tiny.tiny_model, make_images=top9_tiny.make_images,
                           SIZE=top9_tiny.SIZE, TRANSFORM=top9_tiny.TRANSFORM)


def _small_net() -> nn.Module:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Dropout(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
    ).eval()


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def watched() -> SimpleNamespace:
    """A small conv net and what tells whether it was touched: ``net()``, ``hook_count(m)``, ``snapshot(m)``."""
    return SimpleNamespace(net=_small_net, hook_count=_hook_count, snapshot=_snapshot)


@pytest.fixture(scope="session")
def run_python():
    """Run a Python script in a fresh process that can import deconvnet and the test helpers.

    ``run_python(script, *args, timeout=..., env=...)`` -> CompletedProcess (text output captured);
    with ``background=True``, the running Popen instead.
    """
    def run(script: Path | str, *args: str, timeout: float = 180, env: dict | None = None,
            prefix: list[str] | None = None, background: bool = False):
        path = os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])
        environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {}), "PYTHONPATH": path}
        command = [sys.executable, *(prefix or []), str(script), *args]
        if background:
            return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=environment)
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=environment)

    return run


@pytest.fixture(scope="session")
def torchrun(run_python):
    """``torchrun(script, processes, timeout=180)``: the script under ``torch.distributed.run`` on a free port."""
    import torch.distributed

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")

    def run(script: Path | str, processes: int, *, timeout: float = 180) -> subprocess.CompletedProcess:
        with socket.socket() as probe:  # a free port of our own: two runs at once must not join one group
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        launcher = ["-m", "torch.distributed.run", "--nnodes", "1", "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", f"127.0.0.1:{port}", "--nproc-per-node", str(processes)]
        return run_python(script, timeout=timeout, prefix=launcher)

    return run
