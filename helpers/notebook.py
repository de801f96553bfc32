"""The first cell of every notebook: style, seed, device, paths, in one call."""

from __future__ import annotations

import platform
from pathlib import Path
from types import SimpleNamespace

import torch

from .plots import use_style
from .train import pick_device, seed_everything

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SHIPPED_CHECKPOINT = DATA / "vit_shapes.pt"


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
