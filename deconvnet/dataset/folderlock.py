"""One run at a time per output folder: a lock file that names its owner.

Two ``top9`` runs writing into one folder would delete each other's temporary files and
interleave their results. The lock is a file created with O_EXCL (atomic on POSIX and
Windows) holding the owner's process id, host and start time. A lock whose process is
gone (same host, no such pid) is stale, left by a killed run, and is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import DeconvError

LOCK_NAME = ".top9.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return True  # cannot tell: assume the lock is held rather than break it
    return True


def _owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def acquire(folder: Path) -> Path:
    """Take ``folder``'s lock or raise a DeconvError naming the process that holds it."""
    path = Path(folder) / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):  # a stale lock is removed and the creation tried again
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner is None:  # being written this instant, or damaged: look again
                time.sleep(0.1)
                owner = _owner(path)
            if owner is not None and owner.get("host") == me["host"] and not _alive(int(owner.get("pid", -1))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # stale: its process is gone
                continue
            who = (f"process {owner.get('pid')} on {owner.get('host')} (started {owner.get('started')})"
                   if owner is not None else "another process")
            raise DeconvError(f"output folder {str(folder)!r} is in use by {who}: wait for that run to finish or "
                              f"choose another output folder (if that process is gone, delete {path})") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        return path
    raise DeconvError(f"could not take the lock {path}: it keeps reappearing; is another run starting there?")


def release(path: Path) -> None:
    """Remove our lock (only if it is still ours)."""
    owner = _owner(path)
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def locked(folder: Path, take: bool = True) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (``take=False``: a no-op, for the processes that do not own it)."""
    path = acquire(folder) if take else None
    try:
        yield
    finally:
        if path is not None:
            release(path)
