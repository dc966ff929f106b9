"""The one checkpoint of the package: a scan's state, written atomically after every batch.

A checkpoint holds the settings it was made under (a JSON-able dict) and a payload of
tensors, numbers and strings (read back with ``torch.load(weights_only=True)``, so a
checkpoint can never run code). Resuming under other settings is refused, naming the
settings that differ; ``restart`` discards it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import DeconvError
from ..fileio import write_bytes_atomic


class Checkpoint:
    """The checkpoint file at ``path`` for a scan under ``settings``.

    >>> saved = Checkpoint(Path("out/.scan.pt"), {"k": 9})                  # doctest: +SKIP
    >>> saved.save({"done": 32}); saved.load()                              # doctest: +SKIP
    {'done': 32}
    """

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)

    def save(self, payload: dict[str, Any]) -> None:
        # Serialized in memory (it is small), so a full disk fails in Python's write with an OSError
        # that names the file, not inside torch's own file writer with a RuntimeError.
        buffer = io.BytesIO()
        torch.save({"settings": json.dumps(self.settings, sort_keys=True), "payload": payload}, buffer)
        write_bytes_atomic(self.path, buffer.getvalue())

    def _read(self) -> tuple[dict, dict]:
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            return json.loads(saved["settings"]), saved["payload"]
        except Exception as error:  # any damage: the message says how to start over
            raise DeconvError(f"cannot read the scan checkpoint {self.path} ({type(error).__name__}: {error}); "
                              "re-run with --restart to discard it") from error

    def load(self, *, replaceable: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The saved payload; None when there is none (or it differs only in ``replaceable`` settings,
        which discards it). Refuses one made under other settings, naming them."""
        if not self.path.exists():
            return None
        before, payload = self._read()
        if before == self.settings:
            return payload
        differ = [key for key in sorted(set(before) | set(self.settings)) if before.get(key) != self.settings.get(key)]
        if set(differ) <= set(replaceable):
            self.discard()
            return None
        raise DeconvError(f"{self.path} was left by an interrupted run with other settings (different "
                          f"{', '.join(differ)}); re-run with --restart to discard it and start over, "
                          "or choose another output folder")

    def reusable(self) -> dict[str, Any] | None:
        """The payload if a readable checkpoint made under these settings exists, else None."""
        try:
            before, payload = self._read() if self.path.exists() else ({}, None)
        except DeconvError:
            return None
        return payload if before == self.settings else None

    def matches(self) -> bool:
        """Whether a readable checkpoint made under these settings exists."""
        return self.reusable() is not None

    def discard(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
