"""Benchmark: training throughput of the default model, time to 97% test accuracy, and the
rebuilt model's accuracy next to the shipped checkpoint's.

    python benchmarks/training.py

Trains the shipped recipe (`python -m helpers.train` defaults, the same seed) and measures
test accuracy every 50 steps; evaluation time is not counted as training time.
"""

from __future__ import annotations

import json
import platform
import time

import torch

from helpers.data import ShapesDataset
from helpers.model import VisionTransformer, ViTConfig, count_parameters
from helpers.paths import data_file
from helpers.runtime import seed_everything
from helpers.train import TrainConfig, evaluate, train

TARGET = 0.97


def main() -> None:
    cfg = TrainConfig()
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    train_ds, test_ds = ShapesDataset("train"), ShapesDataset("test")
    data_seconds = time.perf_counter() - t0
    model = VisionTransformer(ViTConfig())
    hist = train(model, train_ds, test_ds, cfg, progress=False, eval_every=50)
    compute = hist.val_seconds[-1]
    images = len(hist.step_loss) * cfg.batch_size
    hit = next((i for i, a in enumerate(hist.val_acc) if a >= TARGET), None)
    shipped = json.loads(data_file("vit_shapes.json").read_text())["test_accuracy"]
    final = evaluate(model, test_ds)
    rows = [
        ("machine", f"{platform.machine()}, {torch.get_num_threads()} torch threads"),
        ("torch", str(torch.__version__)),
        (
            "model",
            f"embed_dim {model.cfg.embed_dim}, depth {model.cfg.depth}, {count_parameters(model):,} parameters",
        ),
        ("dataset generation (20k train + 2k test)", f"{data_seconds:.1f} s"),
        ("training throughput", f"{images / compute:,.0f} images/s"),
        (
            f"time to {TARGET:.0%} test accuracy",
            f"{hist.val_seconds[hit]:.0f} s (step {hist.val_step[hit]}, {hist.val_acc[hit]:.2%})"
            if hit is not None
            else "not reached",
        ),
        (f"full recipe ({cfg.epochs} epochs)", f"{compute:.0f} s, test accuracy {final:.2%}"),
        (
            "shipped checkpoint",
            f"test accuracy {shipped:.2%} "
            f"(rebuilt - shipped: {100 * (final - shipped):+.2f} points)",
        ),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}} | value\n{'-' * w}-+-{'-' * 40}")
    for k, v in rows:
        print(f"{k:<{w}} | {v}")


if __name__ == "__main__":
    main()
