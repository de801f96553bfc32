"""The first cell of every notebook: style, seed, device, paths, in one call."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from types import SimpleNamespace

import torch

from .plots import use_style
from .train import pick_device, seed_everything

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SHIPPED_CHECKPOINT = DATA / "vit_shapes.pt"


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may really use: its affinity, capped by a cgroup CPU quota.

    On Binder or in a container, os.cpu_count() reports the host's cores (often 16 or more)
    while the quota allows 1; torch would then start one thread per host core and crawl.
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path(cpu_max).read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n or 1)


def start(seed: int = 0, device: str | None = "cpu") -> SimpleNamespace:
    """Apply the plot style, seed everything, pick the device; returns paths and device.

    The notebooks default to the CPU: their models are tiny and the numbers they print are
    then the same on every machine. Pass device=None to use a GPU when there is one.
    """
    use_style()
    seed_everything(seed)
    dev = pick_device(device)
    print(
        f"Python {platform.python_version()} | torch {torch.__version__} | device: {dev} "
        f"| seed: {seed}"
    )
    return SimpleNamespace(
        root=ROOT, data=DATA, device=dev, seed=seed, checkpoint=SHIPPED_CHECKPOINT
    )
