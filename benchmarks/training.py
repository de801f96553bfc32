"""Benchmark: training throughput of the default model and time to 97% test accuracy.

    python benchmarks/training.py

Trains the shipped recipe (`python -m helpers.train` defaults) and checks test accuracy
every 50 steps; evaluation time is excluded from the training time. Prints a table.
"""

from __future__ import annotations

import platform
import time

import torch
import torch.nn.functional as F

from helpers.data import ShapesDataset
from helpers.model import VisionTransformer, ViTConfig, count_parameters
from helpers.train import TrainConfig, evaluate, lr_at, seed_everything

TARGET = 0.97


def main() -> None:
    cfg = TrainConfig()
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    train_ds, test_ds = ShapesDataset("train"), ShapesDataset("test")
    data_seconds = time.perf_counter() - t0
    model = VisionTransformer(ViTConfig())
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    steps_per_epoch = len(train_ds) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    gen = torch.Generator().manual_seed(cfg.seed)
    train_seconds, step, reached, acc = 0.0, 0, None, 0.0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(train_ds), generator=gen)
        for b in range(steps_per_epoch):
            t = time.perf_counter()
            model.train()
            x, y = train_ds.batch(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            train_seconds += time.perf_counter() - t
            step += 1
            if step % 50 == 0 or step == total:
                acc = evaluate(model, test_ds)
                if reached is None and acc >= TARGET:
                    reached = (train_seconds, step, acc)
    images = step * cfg.batch_size
    rows = [
        ("machine", f"{platform.machine()}, {torch.get_num_threads()} torch threads"),
        ("torch", str(torch.__version__)),
        (
            "model",
            f"dim {model.cfg.dim}, depth {model.cfg.depth}, {count_parameters(model):,} params",
        ),
        ("dataset generation (20k train + 2k test)", f"{data_seconds:.1f} s"),
        ("training throughput", f"{images / train_seconds:,.0f} images/s"),
        (
            f"time to {TARGET:.0%} test accuracy",
            f"{reached[0]:.0f} s (step {reached[1]}, {reached[2]:.2%})"
            if reached
            else "not reached",
        ),
        (f"full recipe ({cfg.epochs} epochs)", f"{train_seconds:.0f} s, test accuracy {acc:.2%}"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}} | value\n{'-' * w}-+-{'-' * 30}")
    for k, v in rows:
        print(f"{k:<{w}} | {v}")


if __name__ == "__main__":
    main()
