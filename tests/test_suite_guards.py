"""The test suite's own safety nets: in CI a missing photo folder fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run_sample_test(missing: Path, ci: str) -> subprocess.Popen:
    env = {**os.environ, "DECONVNET_SAMPLES": str(missing), "CI": ci, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                             str(TESTS / "test_top9_samples.py")], cwd=TESTS.parent, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_missing_shared_photos_skip_locally_and_fail_in_ci(tmp_path):
    missing = tmp_path / "moved-away"
    local, ci = _run_sample_test(missing, ""), _run_sample_test(missing, "true")  # both at once
    local_out, ci_out = local.communicate(timeout=120)[0], ci.communicate(timeout=120)[0]
    assert local.returncode == 0, local_out
    assert "1 skipped" in local_out and f"shared photos not found at {missing}" in local_out
    assert ci.returncode == 1, ci_out
    assert "1 error" in ci_out and "CI is set, so the real-photo checks must run" in ci_out
