"""Running one job over several processes with torch.distributed (e.g. under torchrun).

Only the launch environment decides: WORLD_SIZE > 1 (set by ``torchrun --nproc-per-node N``)
starts a process group, gloo on the CPU and nccl on CUDA; otherwise everything here is a
no-op for a single process. The objects exchanged are small (top-k lists), so the
``*_object`` collectives are used throughout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import EXIT_USAGE, DeconvError, exit_status

REPORT_GRACE_SECONDS = 1.0
T = TypeVar("T")


class RankFailed(DeconvError):
    """Another process of the job failed; ``exit_status`` is the one that process reports."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_status = status


@dataclass
class Group:
    """This process's place in the job: ``rank`` of ``world``; ``owned`` if we started the group.

    Every collective here is one ``all_gather_object`` of (failure, payload), so a process that
    fails (:meth:`abort`) meets the others in whichever collective they wait in, and all of them
    raise :class:`RankFailed` with its message instead of waiting forever.
    """

    rank: int = 0
    world: int = 1
    owned: bool = False
    failed: bool = False  # a failure was exchanged: no collective is run after it

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def _exchange(self, payload: Any, failure: tuple[str, int] | None = None) -> list[Any]:
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, (failure, payload))
        failed = [(rank, item[0]) for rank, item in enumerate(gathered) if item[0] is not None]
        if failed:
            self.failed = True
        if failed and failure is None:
            rank, (message, status) = failed[0]
            raise RankFailed(f"rank {rank}: {message}", status)
        return [item[1] for item in gathered]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        return self._exchange(obj) if self.active else [obj]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        return self._exchange(obj if self.leader else None)[0] if self.active else obj

    def barrier(self) -> None:
        """Wait for every rank (and raise if one has failed)."""
        if self.active:
            self._exchange(None)

    check = barrier  # in a loop: stop as soon as another rank has failed

    def lockstep(self, items: Iterable[T], steps: int) -> Iterator[T]:
        """``items``, one per step for ``steps`` steps (the same number on every rank), checking before each
        step and once at the end that no other rank has failed; a rank whose items run out keeps checking."""
        remaining = iter(items)
        for _ in range(steps):
            self.check()
            item = next(remaining, _DONE)
            if item is not _DONE:
                yield item  # type: ignore[misc]
        self.check()

    def share(self, jobs: Sequence[T]) -> tuple[list[T], int]:
        """This rank's share of ``jobs`` (every world-th from its rank) and the steps every rank takes."""
        return list(jobs[self.rank::self.world]), -(-len(jobs) // self.world)

    def raise_if_any(self, error: BaseException | None) -> None:
        """Raise on every rank if any rank met an error (this rank's own error on this rank)."""
        if error is not None:
            self.abort(error)
            raise error
        self.barrier()

    def abort(self, error: BaseException) -> None:
        """Tell the other ranks, waiting in their next collective, that this one failed with ``error``."""
        if self.active and not self.failed and not isinstance(error, RankFailed):
            message = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
            if not isinstance(error, (DeconvError, OSError)):
                message = f"{type(error).__name__}: {message}"
            try:
                self._exchange(None, failure=(message, exit_status(error)))
            except RuntimeError:  # the group itself is broken (a peer is gone): the error being raised says more
                return
            # A moment for the others to report it: under torchrun, the first process to exit with an
            # error makes the launcher stop the rest.
            time.sleep(REPORT_GRACE_SECONDS)

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False


_DONE = object()


def join(device: str) -> Group:
    """The process group of this job: joined from torchrun's environment, or a single process.

    ``device`` picks the backend (gloo for "cpu", nccl for "cuda"); an already initialized
    group (the caller's own) is used as it is and left open.
    """
    if not dist.is_available():
        return Group()
    if dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size(), owned=False)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Group()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    return Group(dist.get_rank(), dist.get_world_size(), owned=True)


def pick_device(device: str) -> torch.device:
    """``device`` checked; under torchrun "cuda" means this process's LOCAL_RANK GPU."""
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeconvError(f"device {device!r} was requested but CUDA is not available here; use --device cpu")
        under_torchrun = device == "cuda" and "LOCAL_RANK" in os.environ
        chosen = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if under_torchrun else torch.device(device)
        if chosen.index is None:  # "cuda" is the current GPU: name it, so tensors' devices compare equal to it
            chosen = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(chosen)  # nccl works on the current device
        return chosen
    raise DeconvError(f"unknown device {device!r}: expected 'cpu' or 'cuda' (or 'cuda:N')")
