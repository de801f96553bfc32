"""Benchmark: how fast each candidate training recipe reaches 97% test accuracy, and where it
ends. The search that chose the shipped recipe (`helpers.train.TrainConfig`'s defaults).

    python benchmarks/recipes.py [--jobs 2] [--seeds 0,1] [NAME ...]

Each recipe trains the shipped model's architecture from the same seed with one torch thread
(so that `--jobs` runs give the same numbers), measures test accuracy every 25 steps, and
reports the first step at 97%, the images seen by then, and the final test accuracy. Images,
not seconds, because the recipes run side by side: time to 97% on a machine is the images
divided by its training throughput (`benchmarks/training.py` measures both on two threads).
About 4 minutes per recipe and seed on one core: 37 minutes for the whole table with
--jobs 2 on the reference machine (2 cores).
"""

from __future__ import annotations

import argparse
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch
from training import table  # benchmarks/training.py, beside this file

from helpers.data import ShapesDataset
from helpers.model import VisionTransformer, ViTConfig
from helpers.runtime import seed_everything
from helpers.train import TrainConfig, evaluate, train

TARGET = 0.97
EVERY = 25
SHIPPED = TrainConfig()  # the shipped recipe: python -m helpers.train
RECIPES = {
    "shipped: 8 epochs, batch 128, lr 2e-3, warm-up 100": SHIPPED,
    "lr 3e-3": replace(SHIPPED, lr=3e-3),
    "batch 256, lr 3e-3, warm-up 50": replace(SHIPPED, batch_size=256, lr=3e-3, warmup_steps=50),
    "5 epochs, warm-up 50": replace(SHIPPED, epochs=5, warmup_steps=50),
    "5 epochs, batch 64, lr 1.4e-3": replace(SHIPPED, epochs=5, batch_size=64, lr=1.4e-3),
    "5 epochs, warm-up 50, label smoothing 0.1": replace(
        SHIPPED, epochs=5, warmup_steps=50, label_smoothing=0.1
    ),
    "4 epochs, warm-up 30, label smoothing 0.1": replace(
        SHIPPED, epochs=4, warmup_steps=30, label_smoothing=0.1
    ),
}


def run_recipe(name: str, seed: int) -> tuple:
    """(name, steps, step at 97% or None, images by then, final test accuracy)."""
    torch.set_num_threads(1)
    cfg = replace(RECIPES[name], seed=seed)
    seed_everything(seed)
    train_ds, test_ds = ShapesDataset("train"), ShapesDataset("test")
    model = VisionTransformer(ViTConfig())
    hist = train(model, train_ds, test_ds, cfg, progress=False, eval_every=EVERY)
    hit = next((s for s, a in zip(hist.val_step, hist.val_acc) if a >= TARGET), None)
    final = evaluate(model, test_ds)
    return name, len(hist.step_loss), hit, hit * cfg.batch_size if hit else None, final


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"recipes to run (default: all {len(RECIPES)})")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side (default 1)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    a = ap.parse_args(argv)
    names = a.names or list(RECIPES)
    bad = [n for n in names if n not in RECIPES]
    if bad:
        ap.error(f"unknown recipe(s) {bad}; choose from {list(RECIPES)}")
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds takes whole numbers separated by commas, got {a.seeds!r}")
    if not seeds or a.jobs < 1:
        ap.error("give at least one seed and --jobs >= 1")
    runs = [(n, s) for n in names for s in seeds]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(a.jobs, ctx) as pool:
        got = dict(zip(runs, pool.map(run_recipe, *zip(*runs))))
    per = " / ".join(str(s) for s in seeds)
    print(
        f"Test accuracy every {EVERY} steps, one torch thread; seeds {per} side by side in "
        "each cell:\n"
    )
    rows = []
    for name in names:
        res = [got[name, s] for s in seeds]
        images = " / ".join(f"{r[3]:,}" if r[3] else "never" for r in res)
        final = " / ".join(f"{r[4]:.2%}" for r in res)
        rows.append((name, f"{res[0][1]:,}", images, final))
    print(table(rows, ("recipe", "steps", "images to 97%", "final test accuracy")))
    worst = {n: [got[n, s][3] for s in seeds] for n in names}  # images to 97%, per seed
    worst = {n: max(v) for n, v in worst.items() if all(v)}
    if worst:
        best = min(worst, key=worst.get)
        print(
            f"\nThe most images any seed needed, for the best recipe ({best}): "
            f"{worst[best]:,}. 97% in 30 s with every seed takes {worst[best] / 30:,.0f} images/s"
            " of training (benchmarks/training.py measures the machine's)."
        )


if __name__ == "__main__":
    main()
