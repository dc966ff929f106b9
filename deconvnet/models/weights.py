"""Reading a weights file safely (safetensors, or torch.load with weights_only) and fitting it to a model."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import DeconvError
from .labels import short_list
from .pickle_check import unsafe_globals


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a PyTorch checkpoint, never running pickled code."""
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.is_dir():
        raise DeconvError(f"expected a weights file, received a directory: {path}")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise DeconvError(f"weights file is empty (0 bytes): {path}; expected a .safetensors file or a PyTorch "
                          f"state dict saved with torch.save")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise DeconvError(f"cannot read weights file {path}: not a valid safetensors file ({error})") from error
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol: the error below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = re.search(r"GLOBAL (\S+)", str(error))
        # torch stops at the first opcode it does not support, which may come before any global.
        names = [blocked.group(1)] if blocked else unsafe_globals(path)
        if names:
            raise DeconvError(
                f"refused to load {path}: it pickles {', '.join(names)}, which could run code when loaded "
                f"(weights are read with weights_only=True). Save a plain state dict or a safetensors file."
            ) from error
        raise DeconvError(f"cannot read weights file {path}: not a PyTorch state dict or safetensors file "
                          f"(it starts with {head!r})") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = f"; {str(error).splitlines()[0]}" if str(error).strip() else ""
        raise DeconvError(f"cannot read weights file {path}: not a PyTorch state dict or safetensors file "
                          f"(it starts with {head!r}{reason})") from error
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DeconvError(f"expected {path} to hold a state dict (name -> tensor), received {type(state).__name__}")
    others = [f"{key!r} ({type(value).__name__})" for key, value in state.items()
              if not isinstance(value, torch.Tensor)]
    if others:
        raise DeconvError(f"expected {path} to hold a state dict (name -> tensor), received a dict with "
                          f"non-tensor entries {short_list(others)}; save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """load_state_dict, with a message that names what does not match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {short_list(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches {short_list(mismatched)}")
        raise DeconvError(f"weights in {path} do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def load_state_file(model: nn.Module, weights: str | os.PathLike) -> tuple[str, str]:
    """Load a local weights file into ``model`` (safely, checked); its path and SHA-256."""
    path = Path(weights)
    load_checked(model, read_state_dict(path), path)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()
