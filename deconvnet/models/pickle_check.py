"""Which globals a pickled checkpoint names that could run code, read from its opcodes without unpickling it."""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

_HARMLESS_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")
_STORE = {"PUT", "BINPUT", "LONG_BINPUT"}
_FETCH = {"GET", "BINGET", "LONG_BINGET"}


def unsafe_globals(path: Path) -> list[str]:
    """The module.name globals a pickled file refers to, other than torch's own, read without unpickling.

    A torch zip checkpoint is read by torch itself (``get_unsafe_globals_in_checkpoint``); a
    plain pickle (also the legacy torch format, several pickles in a row) is walked opcode by
    opcode. It is only used to name what was refused.
    """
    if zipfile.is_zipfile(path):
        reader = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
        if reader is not None:
            try:
                found = list(reader(str(path)))
            except (RuntimeError, ValueError, KeyError, pickle.UnpicklingError):  # a damaged archive
                found = []
            return [name for name in dict.fromkeys(found) if not name.startswith(_HARMLESS_GLOBALS)]
        with zipfile.ZipFile(path) as archive:
            streams = [io.BytesIO(archive.read(name)) for name in archive.namelist() if name.endswith("data.pkl")]
    else:
        streams = [io.BytesIO(path.read_bytes())]
    found = []
    for stream in streams:
        for _ in range(8):  # the legacy format has a few pickles before the tensor data
            if not _pickle_globals(stream, found):
                break
    return [name for name in dict.fromkeys(found) if not name.startswith(_HARMLESS_GLOBALS)]


def _pickle_globals(stream: io.BytesIO, found: list[str]) -> bool:
    """Append the globals of the next pickle in ``stream``; False when no complete pickle follows."""
    recent: list[str | None] = []  # what each opcode pushed: its string, or None
    memo: dict[int, str | None] = {}
    arg: Any  # an opcode's argument: an int, a string or None, by opcode
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            if opcode.name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif opcode.name in _STORE:
                memo[arg] = recent[-1] if recent else None
            elif opcode.name in _FETCH:
                recent.append(memo.get(arg))
            elif opcode.name in ("GLOBAL", "INST"):
                found.append(arg.replace(" ", "."))
                recent.append(None)
            elif opcode.name == "STACK_GLOBAL":
                if len(recent) >= 2 and recent[-2] and recent[-1]:
                    found.append(f"{recent[-2]}.{recent[-1]}")
                recent.append(None)
            elif opcode.stack_after:
                recent.append(arg if isinstance(arg, str) else None)
    except (ValueError, EOFError):  # past the last pickle (tensor bytes follow), or truncated
        return False
    return True
