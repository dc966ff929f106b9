"""What machine a benchmark ran on, for its table: timings carry over between machines only as ratios.

The CPU model and the instruction set torch's kernels use (AVX2 or AVX-512) decide both the
speed and the summation order of float32 kernels, so every benchmark records them.
"""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_model() -> str:
    """``lscpu``'s model name (e.g. "AMD EPYC"), else what the platform module knows."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """The facts a timing table names: CPU model, cores, torch's CPU capability, threads, load, versions."""
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
            "load_average": os.getloadavg()}


def describe() -> str:
    """One line for the top of a benchmark's printed table."""
    facts = machine()
    return (f"{facts['cpu']}, {facts['cores']} cores, {facts['cpu_capability']} kernels, {facts['threads']} torch "
            f"threads, torch {facts['torch']}, load average {facts['load_average'][0]:.1f}")
