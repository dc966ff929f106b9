"""The test suite's own safety nets: in CI a missing photo folder fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run_photo_test(folder: Path, missing: Path, ci: str) -> subprocess.Popen:
    """pytest on a one-line test that asks for the ``samples`` fixture of tests/conftest.py (as a plugin)."""
    env = {**os.environ, "DECONVNET_SAMPLES": str(missing), "CI": ci,
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "conftest",
                             "--rootdir", str(folder), str(folder / "test_needs_photos.py")], cwd=folder, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_missing_shared_photos_skip_locally_and_fail_in_ci(tmp_path):
    (tmp_path / "test_needs_photos.py").write_text("def test_photos(samples):\n    assert samples.is_dir()\n")
    missing = tmp_path / "moved-away"
    local, ci = _run_photo_test(tmp_path, missing, ""), _run_photo_test(tmp_path, missing, "true")  # both at once
    local_out, ci_out = local.communicate(timeout=120)[0], ci.communicate(timeout=120)[0]
    assert local.returncode == 0, local_out
    assert "1 skipped" in local_out and f"shared photos not found at {missing}" in local_out
    assert ci.returncode == 1, ci_out
    assert "1 error" in ci_out and "CI is set, so the real-photo checks must run" in ci_out
