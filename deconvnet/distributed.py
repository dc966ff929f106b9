"""Running one job over several processes with torch.distributed (e.g. under torchrun).

Only the launch environment decides: WORLD_SIZE > 1 (set by ``torchrun --nproc-per-node N``)
starts a process group, gloo on the CPU and nccl on CUDA; otherwise everything here is a
no-op for a single process. The objects exchanged are small (top-k lists), so the
``*_object`` collectives are used throughout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import DeconvError


@dataclass
class Group:
    """This process's place in the job: ``rank`` of ``world``; ``owned`` if we started the group."""

    rank: int = 0
    world: int = 1
    owned: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.leader else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def raise_if_any(self, error: BaseException | None) -> None:
        """Raise the same DeconvError on every rank if any rank met one, so none waits forever."""
        messages = self.all_gather(None if error is None else str(error))
        if error is not None:
            raise error
        for rank, message in enumerate(messages):
            if message is not None:
                raise DeconvError(f"rank {rank}: {message}")

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False


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
