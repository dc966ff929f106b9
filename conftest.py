"""pytest set-up for the package's doctests (``--doctest-modules deconvnet``); the tests' fixtures are in tests/."""

from __future__ import annotations

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _doctests_write_into_a_scratch_folder(request, tmp_path, monkeypatch):
    """The examples write files like ``run.json`` into the current folder: make it an empty temporary one."""
    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)
