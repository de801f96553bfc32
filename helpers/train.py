"""Seeding, device choice, the training loop, evaluation, and the command that rebuilds the
shipped checkpoint:

    python -m helpers.train --out data/vit_shapes.pt

(see `python -m helpers.train --help`; the defaults are the shipped model's recipe).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import save_checkpoint
from .data import ShapesDataset
from .model import VisionTransformer, ViTConfig, count_parameters


def seed_everything(seed: int = 0) -> None:
    """Seed Python, numpy and torch so that a rerun prints the same numbers on this machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, then Apple's MPS, then the CPU (or `prefer`, e.g. "cpu")."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    label_smoothing: float = 0.0
    seed: int = 0
    n_train: int | None = None  # None: the whole train split


@dataclass
class History:
    """What happened during training, for plots: per step and per epoch."""

    step_loss: list = field(default_factory=list)
    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)  # wall time at the end of each epoch
    probe_step: list = field(default_factory=list)  # with train(probe=...): when it measured,
    probe_seconds: list = field(default_factory=list)  # training time so far (no evaluation),
    probe_acc: list = field(default_factory=list)  # and accuracy on the probe data

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities (N, classes) for float images (N, C, H, W)."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(images[i : i + batch_size].to(device)).softmax(-1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def predictions(model, dataset, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true classes, (N,) each, for a dataset with `.batch(idx)` or an
    (images, labels) pair of tensors, in batches."""
    model.eval()
    device = next(model.parameters()).device
    n = len(dataset) if hasattr(dataset, "batch") else len(dataset[1])
    preds, labels = [], []
    for start in range(0, n, batch_size):
        x, y = _get_batch(dataset, torch.arange(start, min(n, start + batch_size)))
        preds.append(model(x.to(device)).argmax(-1).cpu())
        labels.append(y)
    return torch.cat(preds), torch.cat(labels)


def evaluate(model, dataset, batch_size: int = 500) -> float:
    """Accuracy of `model` on a dataset with `.batch(idx)` (or (images, labels) tensors)."""
    pred, y = predictions(model, dataset, batch_size)
    return (pred == y).double().mean().item()


def _get_batch(dataset, idx):
    if hasattr(dataset, "batch"):
        return dataset.batch(idx)
    images, labels = dataset
    return images[idx], labels[idx]


def train(
    model: torch.nn.Module,
    train_data,
    val_data=None,
    cfg: TrainConfig | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    probe: tuple | None = None,
) -> History:
    """Train with AdamW, warm-up + cosine schedule and cross-entropy; returns a History.

    The progress bar is one line (tqdm.auto: a widget in notebooks, text in a terminal).
    probe=(dataset, every): also measure accuracy on `dataset` every `every` steps, with the
    training time so far not counting any evaluation (for "time to X% accuracy").
    """
    cfg = cfg or TrainConfig()
    device = (
        pick_device(device if isinstance(device, str) else None)
        if not isinstance(device, torch.device)
        else device
    )
    model.to(device)
    seed_everything(cfg.seed)
    n = len(train_data) if cfg.n_train is None else min(cfg.n_train, len(train_data))
    steps_per_epoch = n // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    decay = [p for p in model.parameters() if p.ndim >= 2 and p.requires_grad]
    no_decay = [p for p in model.parameters() if p.ndim < 2 and p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    hist = History()
    start, step, compute = time.perf_counter(), 0, 0.0
    bar = tqdm(
        total=total,
        disable=not progress,
        desc="training",
        unit="step",
        mininterval=0.5,
        dynamic_ncols=True,
        leave=True,
    )
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        run_loss, run_correct = 0.0, 0
        for b in range(steps_per_epoch):
            t_step = time.perf_counter()
            x, y = _get_batch(train_data, order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            x, y = x.to(device), y.to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            compute += time.perf_counter() - t_step
            if probe is not None and (step % probe[1] == 0 or step == total):
                hist.probe_step.append(step)
                hist.probe_seconds.append(compute)
                hist.probe_acc.append(evaluate(model, probe[0]))
                model.train()
            hist.step_loss.append(loss.item())
            run_loss += loss.item() * len(y)
            run_correct += (logits.argmax(-1) == y).sum().item()
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
        seen = steps_per_epoch * cfg.batch_size
        hist.epoch.append(epoch + 1)
        hist.train_loss.append(run_loss / seen)
        hist.train_acc.append(run_correct / seen)
        hist.val_acc.append(evaluate(model, val_data) if val_data is not None else float("nan"))
        hist.seconds.append(time.perf_counter() - start)
        bar.set_postfix(
            epoch=epoch + 1, loss=f"{hist.train_loss[-1]:.3f}", val_acc=f"{hist.val_acc[-1]:.3f}"
        )
    bar.close()
    model.eval()
    return hist


def confusion_matrix(model, dataset, num_classes: int | None = None, batch_size: int = 500):
    """Counts (classes, classes): row = true class, column = predicted class."""
    pred, y = predictions(model, dataset, batch_size)
    k = num_classes or model.head.out_features
    return torch.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def compare_configs(
    configs: dict,
    train_data,
    eval_data,
    cfg: TrainConfig | None = None,
    seeds=(0, 1, 2),
    base: ViTConfig | None = None,
    progress: bool = False,
    device: str = "cpu",
    done: list[dict] = (),
) -> list[dict]:
    """Train one model per (config, seed) on the same budget and evaluate it on `eval_data`.

    configs: {name: ViTConfig overrides on top of `base`}. The seed sets both the model's
    initialization and the training order (TrainConfig.seed). Returns one row per run:
    {"name", "seed", "accuracy", "seconds" (training only), "parameters"}.
    done: rows of runs already made the same way (e.g. a model trained earlier in a notebook);
    they are kept in their place and not trained again.
    """
    cfg = cfg or TrainConfig()
    known = {(r["name"], r["seed"]): r for r in done}
    rows = []
    runs = [(name, seed) for name in configs for seed in seeds]
    bar = tqdm(runs, disable=not progress, desc="runs", unit="run", dynamic_ncols=True)
    for name, seed in bar:
        if (name, seed) in known:
            rows.append(dict(known[(name, seed)]))
            continue
        seed_everything(seed)
        model = VisionTransformer(base, **configs[name])
        hist = train(
            model, train_data, None, replace(cfg, seed=seed), progress=False, device=device
        )
        rows.append(
            {
                "name": name,
                "seed": seed,
                "accuracy": evaluate(model, eval_data),
                "seconds": hist.seconds[-1],
                "parameters": count_parameters(model),
            }
        )
    return rows


def summarize_runs(rows: list[dict], keys=("accuracy", "seconds")) -> list[dict]:
    """Group rows by "name" (in order of first appearance): mean, std (n-1), min, max per key,
    the number of runs, and the parameter count (the same for every seed of a config)."""
    out = []
    for name in dict.fromkeys(r["name"] for r in rows):
        group = [r for r in rows if r["name"] == name]
        s = {"name": name, "runs": len(group), "parameters": group[0]["parameters"]}
        for key in keys:
            v = torch.tensor([float(r[key]) for r in group], dtype=torch.float64)
            s[key] = v.mean().item()
            s[f"{key}_std"] = v.std().item() if len(v) > 1 else 0.0
            s[f"{key}_min"], s[f"{key}_max"] = v.min().item(), v.max().item()
        out.append(s)
    return out


def format_table(summary: list[dict]) -> str:
    """An aligned text table of `summarize_runs` output (accuracy in %, time in s)."""
    head = f"{'config':<22} {'runs':>4} {'accuracy % (mean ± std)':>24} {'min–max %':>12} "
    head += f"{'train s':>12} {'params':>8}"
    lines = [head, "-" * len(head)]
    for s in summary:
        acc = f"{100 * s['accuracy']:.1f} ± {100 * s['accuracy_std']:.1f}"
        rng = f"{100 * s['accuracy_min']:.1f}–{100 * s['accuracy_max']:.1f}"
        sec = f"{s['seconds']:.1f} ± {s['seconds_std']:.1f}"
        lines.append(
            f"{s['name']:<22} {s['runs']:>4} {acc:>24} {rng:>12} {sec:>12} {s['parameters']:>8,}"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description="Train the tiny ViT on shapes-in-clutter and save a checkpoint "
        "(the defaults rebuild data/vit_shapes.pt).",
    )
    p.add_argument("--out", default="data/vit_shapes.pt", help="checkpoint path")
    p.add_argument("--pool", default="cls", choices=["cls", "gap", "map"])
    p.add_argument("--no-class-token", action="store_true")
    for name, val in asdict(TrainConfig()).items():
        if name != "n_train":
            p.add_argument(f"--{name.replace('_', '-')}", type=type(val), default=val)
    p.add_argument("--dim", type=int, default=ViTConfig.dim)
    p.add_argument("--depth", type=int, default=ViTConfig.depth)
    p.add_argument("--heads", type=int, default=ViTConfig.heads)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    tcfg = TrainConfig(**{k: getattr(a, k) for k in asdict(TrainConfig()) if k != "n_train"})
    seed_everything(tcfg.seed)
    mcfg = ViTConfig(
        dim=a.dim, depth=a.depth, heads=a.heads, pool=a.pool, class_token=not a.no_class_token
    )
    model = VisionTransformer(mcfg)
    train_ds, val_ds, test_ds = (ShapesDataset(s) for s in ("train", "val", "test"))
    hist = train(model, train_ds, val_ds, tcfg, device="cpu")
    test_acc = evaluate(model, test_ds)
    meta = {
        "test_accuracy": round(test_acc, 4),
        "val_accuracy": round(hist.val_acc[-1], 4),
        "train_seconds": round(hist.seconds[-1], 1),
        "parameters": count_parameters(model),
        "train_config": asdict(tcfg),
        "dataset": "shapes-in-clutter (helpers.data), seed 0, 20k train / 2k val / 2k test",
        "torch": str(torch.__version__),
        "command": "python -m helpers.train "
        + " ".join(argv if argv is not None else os.sys.argv[1:]),
    }
    save_checkpoint(model, a.out, meta)
    Path(a.out).with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"test accuracy {test_acc:.4f}  ({hist.seconds[-1]:.0f} s of training) -> {a.out}")
    return meta


if __name__ == "__main__":
    main()
