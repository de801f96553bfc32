"""Notebook 08's experiments: the brief's best practices and one misconception, each tested
with several seeds. Too many runs for a notebook, so they run as a command and the results
ship in `data/`:

    python -m helpers.studies.practices --threads 1 --out data/practices_runs.json --force

(`--only init,cls_lr` runs some parts; with `--merge` the other parts of the record at
--out are kept, and the record's "made_by" says which command made each part; `--jobs 2`
runs parts side by side in two processes, with the same numbers, since every part seeds its
own runs.) The six first parts take about 17 minutes of CPU time (981 s measured, torch 2.13,
one thread); "no_decay_tokens", "finetune_long" and "mask_fair" add about 10 more (their
runs trained 164 s, 224 s and 119 s). The shipped record was made in three commands (its
"made_by"): the whole study, then `--only mask_fair,finetune_long,init,cls_lr,no_decay_tokens
--merge` (17 min of wall time on a 2-core machine shared with other work; "init" and "cls_lr"
came out identical to the first command's), then `--only finetune_long --merge` (4 min). The
record holds the command, the torch version, the thread count, the
machine, every budget and one row per run. Notebook 08 loads it (`load_record`), shows it,
and retrains one run live (`live_check`) to show that the file matches the code:
bit-identical for the same torch version, thread count and kind of CPU, near the recorded
seeds elsewhere.

Runs of two configurations share their seeds (the same initialization of everything else
and the same batches), so the notebook compares them seed by seed (`seed_values`,
helpers.stats.compare).

The parts (each a list of rows of helpers.studies.runner.compare_configs):
- "init": the CLS token drawn four ways (zeros, std 1, truncated std 0.02, std 1e-6),
  trained on notebook 04's budget: accuracy, a learning curve, how far the token moved;
- "cls_lr": the CLS token and its position slot at 0.1x / 1x / 10x the base rate;
- "no_decay_tokens": "init" and "cls_lr" again without weight decay on the CLS token and
  the position table (timm's rule, TrainConfig.no_decay_tokens), paired by seed with them;
- "base_lr": four base rates for a CLS model and a GAP model (no CLS token);
- "dropout": dropout on the pooled CLS output (timm's `drop_rate`) with 2 000 images;
- "finetune": from the shipped checkpoint to two new label sets: a linear probe, the head
  and the CLS token only, everything, and training from scratch, with learning curves;
- "finetune_long": the colour task again: linear probes on the frozen CLS token fit to
  convergence (L-BFGS), and the probe and "head + CLS token" trained 4x longer at 3x the
  rate, from a fresh head and from the converged probe as the head;
- "global": regression and counting with CLS vs GAP heads; the object's 8x8 patch mask from
  the patch tokens vs from the CLS token alone; and linear probes on frozen features: CLS,
  the mean of the patches, and both concatenated (one of DINOv2's linear-evaluation inputs);
- "mask_fair": the mask from the CLS token with a fair chance: positives weighted by
  negatives / positives and 4x the steps; and converged probes on the shipped model's frozen
  tokens (CLS vs patch tokens).
"""

from __future__ import annotations

import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attention import patch_mask
from ..checkpoint import (
    atomic_write,
    claim_output,
    comma_list,
    command_parser,
    load_checkpoint,
    parse_command,
    read_checkpoint,
)
from ..data import CLASSES, ShapesDataset
from ..model import VisionTransformer, ViTConfig
from ..paths import data_file
from ..probes import fit_probe, probe_accuracy
from ..runtime import provenance
from ..train import TrainConfig, evaluate
from .runner import compare_configs

RECORD = "practices_runs.json"
PARTS = (
    "init",
    "cls_lr",
    "base_lr",
    "dropout",
    "finetune",
    "global",
    "no_decay_tokens",
    "finetune_long",
    "mask_fair",
)
MAIN = dict(embed_dim=32, depth=2, num_heads=2)  # notebook 04's small model
BUDGET = TrainConfig(epochs=1, batch_size=64, lr=3e-3, warmup_steps=50)  # 250 steps
N_TRAIN = 16_000  # one pass of 250 steps of 64
N_CURVE = 500  # validation images for learning curves
EVAL_EVERY = 25

SEEDS = (0, 1, 2, 3, 4)  # init
FEW_SEEDS = (0, 1, 2)  # every other part

INITS = ("zeros", "normal", "trunc_normal", "randn")  # cls_init values of ViTConfig
INIT_SOURCES = {
    "zeros": "the original ViT (google-research/vision_transformer, Flax)",
    "normal": "timm today: normal, std 1e-6",
    "trunc_normal": "DeiT and timm <= 0.5: std 0.02 (here cut at 2 std)",
    "randn": "the brief's torch.randn: std 1",
}
CLS_LR_SCALES = (0.1, 1.0, 10.0)
BASE_LRS = (3e-4, 1e-3, 3e-3, 1e-2)
POOLS = {"CLS": dict(global_pool="token"), "GAP": dict(global_pool="avg", class_token=False)}

DROP_RATES = (0.0, 0.1, 0.3)
DROP_N_TRAIN = 2_000
DROP_BUDGET = TrainConfig(epochs=25, batch_size=64, lr=3e-3, warmup_steps=50)  # 775 steps

FT_TASKS = {"colour": len(CLASSES), "round or angular": 2}  # task -> classes
ROUND = (CLASSES.index("disk"), CLASSES.index("ring"))
FT_TARGET = {"colour": 0.8, "round or angular": 0.9}  # accuracy that counts as "learned"
FT_METHODS = ("linear probe", "head + CLS token", "full fine-tuning", "from scratch")
FT_BUDGET = TrainConfig(epochs=1, batch_size=64, lr=1e-3, warmup_steps=20, n_train=6_400)
FT_EVAL_EVERY = 10
# "finetune_long": the colour task at four times the passes and three times the rate
FT_LONG_METHODS = ("linear probe", "head + CLS token")
PROBE_START = "from the probe: "  # these runs start with the converged probe as their head
FT_LONG_RUNS = FT_LONG_METHODS + tuple(PROBE_START + m for m in FT_LONG_METHODS)
FT_LONG_BUDGET = TrainConfig(epochs=4, batch_size=64, lr=3e-3, warmup_steps=20, n_train=6_400)
FT_LONG_EVAL_EVERY = 50
PROBE_STEPS = (100, 1000)  # L-BFGS iterations of the converged probes: the same answer = converged

REG_TASKS = {"size": ("radius",), "position": ("cx", "cy"), "count": ("num_clutter",)}
MASK_READS = ("patch tokens", "CLS token")
PROBE_FEATURES = ("CLS", "mean of patches", "CLS + mean")
PROBE_TASKS = ("shape", "colour", "size", "position", "count")
N_PROBE = 4_000  # training images for the frozen-feature probes
# "mask_fair": the CLS-token mask with positives weighted up, at four times the budget
MASK_BUDGET = replace(BUDGET, epochs=4)  # 1 000 steps


# --------------------------------------------------------------------------------------
# Targets and datasets
# --------------------------------------------------------------------------------------


class TargetSet:
    """The images of a ShapesDataset with other targets: `.batch(idx)` -> (images, targets)."""

    def __init__(self, ds: ShapesDataset, targets: torch.Tensor):
        targets = torch.as_tensor(targets)
        if len(targets) != len(ds):
            raise ValueError(f"{len(targets)} targets for {len(ds)} images: pass one per image.")
        self.ds, self.targets = ds, targets

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx):
        return self.ds.images[idx].float() / 255, self.targets[idx]


def task_labels(ds: ShapesDataset, task: str) -> torch.Tensor:
    """Class labels (N,) of a new label set: "colour" (index into COLOUR_NAMES), "round or
    angular" (1 for disk and ring, 0 for the rest), or "shape" (the dataset's own)."""
    if task == "colour":
        return ds.attributes["colour"].long()
    if task == "round or angular":
        return torch.isin(ds.labels, torch.tensor(ROUND)).long()
    if task == "shape":
        return ds.labels
    raise ValueError(f"unknown task {task!r}; choose 'colour', 'round or angular' or 'shape'.")


def regression_targets(ds: ShapesDataset, task: str) -> torch.Tensor:
    """Targets (N, k) of a regression task of REG_TASKS, float64, in the attributes' units."""
    if task not in REG_TASKS:
        raise ValueError(f"unknown regression task {task!r}; choose one of {tuple(REG_TASKS)}.")
    return torch.stack([ds.attributes[k].double() for k in REG_TASKS[task]], 1)


def object_patches(ds: ShapesDataset, patch_size: int = 4) -> torch.Tensor:
    """The object's patch mask (N, g*g) as floats 0/1: patches at least a quarter covered
    (at a half, thin shapes such as a small cross would cover no patch at all)."""
    return (patch_mask(ds.masks, patch_size) >= 0.25).flatten(1).float()


def r2_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Coefficient of determination, averaged over the outputs: 1 - SSE / SST per column."""
    pred, target = torch.as_tensor(pred).double(), torch.as_tensor(target).double()
    if pred.shape != target.shape or pred.ndim != 2 or len(pred) < 2:
        raise ValueError(
            f"pred and target must be (N, k) with N >= 2 and the same shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}."
        )
    sse = ((pred - target) ** 2).sum(0)
    sst = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return (1 - sse / sst).mean().item()


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over images of |predicted & true| / |predicted | true| (predicted: logit > 0)."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ.")
    p, t = logits > 0, target > 0.5
    union = (p | t).sum(1).clamp_min(1)
    return ((p & t).sum(1) / union).double().mean().item()


# --------------------------------------------------------------------------------------
# Models for the other tasks
# --------------------------------------------------------------------------------------


class MaskModel(nn.Module):
    """A ViT that predicts the object's patch mask (B, N) as logits.

    read="patch tokens": the same linear head (D -> 1) on every final patch token;
    read="CLS token": one linear layer (D -> N) on the final CLS token alone."""

    def __init__(self, cfg: ViTConfig, read: str):
        super().__init__()
        if read not in MASK_READS:
            raise ValueError(f"read={read!r} is not one of {MASK_READS}.")
        self.read = read
        n = 1 if read == "patch tokens" else cfg.num_patches
        self.vit = VisionTransformer(cfg, num_classes=n, global_pool="token")

    def forward(self, x):
        if self.read == "CLS token":
            return self.vit(x)  # (B, N)
        tokens = self.vit.forward_features(x)[:, self.vit.cfg.num_prefix_tokens :]  # (B, N, D)
        return self.vit.head(tokens)[..., 0]  # (B, N)


def finetune_model(method: str, num_classes: int, checkpoint=None) -> VisionTransformer:
    """The shipped model (or `checkpoint`) with a fresh head of `num_classes`, and only the
    parameters `method` trains left trainable; "from scratch": the same architecture, new."""
    if method not in FT_METHODS:
        raise ValueError(f"method={method!r} is not one of {FT_METHODS}.")
    payload = read_checkpoint(checkpoint or data_file("vit_shapes.pt"))
    cfg = replace(ViTConfig(**payload["config"]), num_classes=num_classes)
    model = VisionTransformer(cfg)
    if method == "from scratch":
        return model
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith("head.")}
    model.load_state_dict(state, strict=False)
    trainable = {
        "linear probe": ("head.",),
        "head + CLS token": ("head.", "cls_token"),
        "full fine-tuning": ("",),
    }[method]
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(trainable))
    return model


# --------------------------------------------------------------------------------------
# Scores and measurements
# --------------------------------------------------------------------------------------


def curve(hist) -> dict:
    return {"curve_step": list(hist.val_step), "curve_accuracy": list(hist.val_acc)}


def cls_moved(model, hist, start) -> dict:
    """A learning curve, and how far the CLS token moved from its start (L2 norms)."""
    out = curve(hist)
    if model.cls_token is not None:
        c0, c1 = start["cls_token"], model.cls_token.detach()
        out.update(
            cls_start_norm=c0.norm().item(),
            cls_end_norm=c1.norm().item(),
            cls_moved=(c1 - c0).norm().item(),
            patch_slot_norm=model.pos_embed.detach()[0, 1:].norm(dim=-1).mean().item(),
        )
    return out


@torch.no_grad()
def _outputs(model, data, batch_size: int = 500):
    model.eval()
    outs, ys = [], []
    for s in range(0, len(data), batch_size):
        x, y = data.batch(torch.arange(s, min(len(data), s + batch_size)))
        outs.append(model(x)), ys.append(y)
    return torch.cat(outs), torch.cat(ys)


def regression_score(mean, std):
    """score(model, data) -> {"r2", "mae"} in the targets' units (standardized outputs)."""

    def score(model, data):
        out, y = _outputs(model, data)
        pred = out.double() * std + mean
        y = y.double() * std + mean
        return {"r2": r2_score(pred, y), "mae": (pred - y).abs().mean().item()}

    return score


def mask_score(model, data):
    out, y = _outputs(model, data)
    return {"iou": mask_iou(out, y)}


def mse_loss(model, x, y):
    return F.mse_loss(model(x), y), None


def bce_loss(model, x, y):
    return F.binary_cross_entropy_with_logits(model(x), y), None


def weighted_bce(pos_weight: float):
    """A BCE loss_fn whose positives count pos_weight times (negatives / positives balances
    a mask in which few patches hold the object)."""
    w = torch.tensor(float(pos_weight))

    def loss(model, x, y):
        return F.binary_cross_entropy_with_logits(model(x), y, pos_weight=w), None

    return loss


def balance(targets: torch.Tensor) -> float:
    """negatives / positives of 0/1 targets: the pos_weight that gives both the same weight."""
    pos = float(targets.sum())
    if pos == 0 or pos == targets.numel():
        raise ValueError("the targets are all 0 or all 1: there is nothing to balance.")
    return (targets.numel() - pos) / pos


def fit_mask_probe(features, targets, pos_weight: float, steps: int = 200, wd: float = 1e-3):
    """Independent logistic regressions (N, D) -> (N, K) on frozen, standardized features,
    full batch with L-BFGS from zero (deterministic), positives weighted by pos_weight.
    Returns predict(features) -> logits (N, K)."""
    features, targets = features.detach().float(), targets.float()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std
    w = torch.zeros(x.shape[1], targets.shape[1], requires_grad=True)
    b = torch.zeros(targets.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )
    pw = torch.tensor(float(pos_weight))

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, targets, pos_weight=pw)
        loss = loss + wd * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda f: ((f.float() - mean) / std) @ w + b


@torch.no_grad()
def pooled_features(model, images, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Frozen features of a CLS model: "CLS" (N, D), "mean of patches" (N, D) and both
    concatenated, "CLS + mean" (N, 2D), from the final (normalized) tokens."""
    model.eval()
    P = model.cfg.num_prefix_tokens
    cls, mean = [], []
    for s in range(0, len(images), batch_size):
        t = model.forward_features(images[s : s + batch_size])  # (B, T, D)
        cls.append(t[:, 0]), mean.append(t[:, P:].mean(1))
    cls, mean = torch.cat(cls), torch.cat(mean)
    return {"CLS": cls, "mean of patches": mean, "CLS + mean": torch.cat([cls, mean], 1)}


def ridge_r2(x_train, y_train, x_val, y_val, lam: float = 1e-3) -> float:
    """R^2 on (x_val, y_val) of a ridge regression fit on standardized training features."""
    mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    a = torch.cat([(x_train - mu) / sd, torch.ones(len(x_train), 1)], 1).double()
    b = torch.cat([(x_val - mu) / sd, torch.ones(len(x_val), 1)], 1).double()
    reg = lam * len(a) * torch.eye(a.shape[1], dtype=torch.float64)
    reg[-1, -1] = 0  # no penalty on the bias
    w = torch.linalg.solve(a.T @ a + reg, a.T @ y_train.double())
    return r2_score(b @ w, y_val)


def probe_scores(model, probe_train: ShapesDataset, val: ShapesDataset) -> dict:
    """{(task, features): score}: accuracy for "shape" and "colour", R^2 for the rest."""
    f_tr = pooled_features(model, probe_train.images.float() / 255)
    f_va = pooled_features(model, val.images.float() / 255)
    out = {}
    for task in PROBE_TASKS:
        for feat in PROBE_FEATURES:
            if task in ("shape", "colour"):
                y_tr, y_va = task_labels(probe_train, task), task_labels(val, task)
                probe = fit_probe(f_tr[feat], y_tr, num_classes=int(y_tr.max()) + 1)
                out[(task, feat)] = probe_accuracy(probe, f_va[feat], y_va)
            else:
                y_tr = regression_targets(probe_train, task)
                y_va = regression_targets(val, task)
                out[(task, feat)] = ridge_r2(f_tr[feat], y_tr, f_va[feat], y_va)
    return out


# --------------------------------------------------------------------------------------
# The parts
# --------------------------------------------------------------------------------------


def datasets() -> tuple[ShapesDataset, ShapesDataset]:
    """The training images (the first N_TRAIN of the train split) and the validation split."""
    return ShapesDataset("train", n=N_TRAIN), ShapesDataset("val")


def cls_runs(configs, train_set, val, seeds, progress, budget=BUDGET, **train_kwargs) -> list[dict]:
    """compare_configs on the study's model and `budget`, measuring how far the CLS token
    moved (the "init" and "cls_lr" parts); train_kwargs go to train()."""
    return compare_configs(
        configs,
        train_set,
        val,
        budget,
        seeds,
        ViTConfig(**MAIN),
        progress,
        measure=cls_moved,
        train_kwargs=train_kwargs,
    )


def run_init(train_set, val, seeds=SEEDS, progress=True, budget=BUDGET) -> list[dict]:
    configs = {how: dict(cls_init=how) for how in INITS}
    curve_val = ShapesDataset("val", n=N_CURVE)
    return cls_runs(
        configs,
        train_set,
        val,
        seeds,
        progress,
        budget,
        val_data=curve_val,
        eval_every=EVAL_EVERY,
    )


def cls_lr_name(scale: float) -> str:
    return f"CLS lr x{scale:g}"


def run_cls_lr(train_set, val, seeds=FEW_SEEDS, progress=True, budget=BUDGET) -> list[dict]:
    rows = []
    for s in CLS_LR_SCALES:
        scale = {"cls_token": s, "pos_embed[0]": s}
        rows += cls_runs(
            {cls_lr_name(s): {}}, train_set, val, seeds, progress, budget, lr_scale=scale
        )
    return [dict(r, scale=s) for r, s in zip(rows, [s for s in CLS_LR_SCALES for _ in seeds])]


def run_base_lr(train_set, val, seeds=FEW_SEEDS, progress=True) -> list[dict]:
    rows = []
    for lr in BASE_LRS:
        named = {f"{p} · lr {lr:g}": c for p, c in POOLS.items()}
        got = compare_configs(
            named, train_set, val, replace(BUDGET, lr=lr), seeds, ViTConfig(**MAIN), progress
        )
        rows += [dict(r, pool=r["name"].split(" ·")[0], lr=lr) for r in got]
    return rows


def run_dropout(train_set, val, seeds=FEW_SEEDS, progress=True) -> list[dict]:
    small = ShapesDataset("train", n=DROP_N_TRAIN)

    def score(model, data):
        return {"accuracy": evaluate(model, data), "train_accuracy": evaluate(model, small)}

    configs = {f"drop_rate {p:g}": dict(drop_rate=p) for p in DROP_RATES}
    rows = compare_configs(
        configs, small, val, DROP_BUDGET, seeds, ViTConfig(**MAIN), progress, score=score
    )
    return [dict(r, gap=r["train_accuracy"] - r["accuracy"]) for r in rows]


def steps_to(curve_step, curve_acc, target) -> int | None:
    """The first evaluated step with accuracy >= target, or None when it was never reached."""
    for step, acc in zip(curve_step, curve_acc):
        if acc >= target:
            return step
    return None


def _task_runs(task, methods, make, sets, budget, eval_every, seeds, progress) -> list[dict]:
    """One fine-tuning task's runs, one per method and seed, each with its learning curve on
    the curve set; `sets` = (train, val, curve val), datasets the task relabels."""
    tr, va, cv = (TargetSet(d, task_labels(d, task)) for d in sets)
    got = compare_configs(
        {f"{task} · {m}": dict(method=m) for m in methods},
        tr,
        va,
        budget,
        seeds,
        None,
        progress,
        make_model=make,
        measure=lambda model, hist, start: curve(hist),
        train_kwargs=dict(val_data=cv, eval_every=eval_every),
    )
    return [dict(r, task=task, method=r["name"].split(" · ")[1]) for r in got]


def run_finetune(train_set, val, seeds=FEW_SEEDS, progress=True, checkpoint=None) -> list[dict]:
    sets = (train_set, val, ShapesDataset("val", n=N_CURVE))
    rows = []
    for task, k in FT_TASKS.items():

        def make(overrides, base, k=k):
            return finetune_model(overrides["method"], k, checkpoint)

        rows += _task_runs(task, FT_METHODS, make, sets, FT_BUDGET, FT_EVAL_EVERY, seeds, progress)
    return rows


def run_global(train_set, val, seeds=FEW_SEEDS, progress=True, checkpoint=None) -> dict:
    base = ViTConfig(**MAIN)
    regression = []
    for task in REG_TASKS:
        y_tr, y_va = regression_targets(train_set, task), regression_targets(val, task)
        mean, std = y_tr.mean(0), y_tr.std(0)
        tr = TargetSet(train_set, ((y_tr - mean) / std).float())
        va = TargetSet(val, ((y_va - mean) / std).float())
        k = y_tr.shape[1]
        configs = {f"{task} · {p}": dict(c, num_classes=k) for p, c in POOLS.items()}
        got = compare_configs(
            configs,
            tr,
            va,
            BUDGET,
            seeds,
            base,
            progress,
            score=regression_score(mean, std),
            train_kwargs=dict(loss_fn=mse_loss),
        )
        regression += [dict(r, task=task, read=r["name"].split(" · ")[1]) for r in got]
    tr, va = TargetSet(train_set, object_patches(train_set)), TargetSet(val, object_patches(val))
    mask = compare_configs(
        {read: dict(read=read) for read in MASK_READS},
        tr,
        va,
        BUDGET,
        seeds,
        base,
        progress,
        make_model=lambda o, b: MaskModel(b, o["read"]),
        score=mask_score,
        train_kwargs=dict(loss_fn=bce_loss),
    )
    # frozen features of CLS classifiers: the "init" part's trunc_normal runs, retrained
    probe_train = ShapesDataset("train", n=N_PROBE)
    probes = []

    def measure(model, hist, start):
        return {"probes": probe_scores(model, probe_train, val)}

    got = compare_configs(
        {"CLS classifier": {}}, train_set, val, BUDGET, seeds, base, progress, measure=measure
    )
    shipped, _ = load_checkpoint(checkpoint or data_file("vit_shapes.pt"))
    got.append(
        {
            "name": "shipped model",
            "seed": None,
            "accuracy": evaluate(shipped, val),
            "probes": probe_scores(shipped, probe_train, val),
        }
    )
    for r in got:
        for (task, feat), v in r["probes"].items():
            probes.append(
                {
                    "name": f"{task} · {feat}",
                    "model": r["name"],
                    "seed": r["seed"],
                    "task": task,
                    "features": feat,
                    "score": v,
                    "seconds": 0.0,
                    "parameters": 0,
                    "classifier_accuracy": r["accuracy"],
                }
            )
    return {"regression": regression, "mask": mask, "probes": probes}


def run_no_decay_tokens(train_set, val, seeds=None, progress=True) -> dict:
    """The "init" and "cls_lr" parts again with timm's rule: no weight decay on the CLS token
    and the position table (TrainConfig.no_decay_tokens), paired by seed with those parts."""
    budget = replace(BUDGET, no_decay_tokens=True)
    kw = {} if seeds is None else {"seeds": seeds}
    return {
        "init": run_init(train_set, val, progress=progress, budget=budget, **kw),
        "cls_lr": run_cls_lr(train_set, val, progress=progress, budget=budget, **kw),
    }


def probe_as_head(model: VisionTransformer, probe) -> VisionTransformer:
    """Put a linear probe fit on the model's final CLS token into its head (the probe's
    standardization folded into the weights): the model then predicts what the probe does."""
    w = probe.weight / probe.std  # (classes, D)
    with torch.no_grad():
        model.head.weight.copy_(w)
        model.head.bias.copy_(probe.bias - w @ probe.mean)
    return model


def converged_probes(train_set, val, checkpoint=None) -> tuple[list[dict], dict]:
    """Linear probes fit to convergence (L-BFGS, full batch) on the shipped model's frozen
    CLS token, for each new task of FT_TASKS, on the fine-tuning part's training images; each
    at PROBE_STEPS iterations, so that the record shows the fit has stopped moving.
    Returns (rows, {task: the probe of the most iterations})."""
    model, _ = load_checkpoint(checkpoint or data_file("vit_shapes.pt"))
    n = FT_BUDGET.n_train
    f_tr = pooled_features(model, train_set.images[:n].float() / 255)["CLS"]
    f_va = pooled_features(model, val.images.float() / 255)["CLS"]
    rows, probes = [], {}
    for task, k in FT_TASKS.items():
        y_tr, y_va = task_labels(train_set, task)[:n], task_labels(val, task)
        for steps in PROBE_STEPS:
            probes[task] = probe = fit_probe(f_tr, y_tr, num_classes=k, steps=steps)
            rows.append(
                {
                    "task": task,
                    "steps": steps,
                    "accuracy": probe_accuracy(probe, f_va, y_va),
                    "train_accuracy": probe_accuracy(probe, f_tr, y_tr),
                }
            )
    return rows, probes


def run_finetune_long(train_set, val, seeds=FEW_SEEDS, progress=True, checkpoint=None) -> dict:
    """The colour task again: converged linear probes on the frozen CLS token, and the
    trained probe and "head + CLS token" at FT_LONG_BUDGET (4x the passes, 3x the rate),
    from a fresh head and from the converged probe as the head (FT_LONG_RUNS)."""
    curve_val = ShapesDataset("val", n=N_CURVE)
    task = "colour"
    converged, probes = converged_probes(train_set, val, checkpoint)

    def make(overrides, base):
        method = overrides["method"]
        model = finetune_model(method.removeprefix(PROBE_START), FT_TASKS[task], checkpoint)
        return probe_as_head(model, probes[task]) if method.startswith(PROBE_START) else model

    sets = (train_set, val, curve_val)
    runs = _task_runs(
        task, FT_LONG_RUNS, make, sets, FT_LONG_BUDGET, FT_LONG_EVAL_EVERY, seeds, progress
    )
    return {"converged": converged, "runs": runs}


def frozen_mask_probes(train_set, val, checkpoint=None) -> list[dict]:
    """The object's patch mask from the shipped model's frozen tokens, by logistic
    regressions fit to convergence with balanced positives: from the CLS token (D -> 64) and
    from each patch token (the same D -> 1 on every patch)."""
    model, _ = load_checkpoint(checkpoint or data_file("vit_shapes.pt"))
    P = model.cfg.num_prefix_tokens

    @torch.no_grad()
    def tokens(ds, n):
        model.eval()
        x = ds.images[:n].float() / 255
        return torch.cat([model.forward_features(x[s : s + 500]) for s in range(0, n, 500)])

    t_tr, t_va = tokens(train_set, N_PROBE), tokens(val, len(val))
    m_tr, m_va = object_patches(train_set)[:N_PROBE], object_patches(val)
    pw = balance(m_tr)
    rows = []
    for read in MASK_READS:
        if read == "CLS token":
            f_tr, f_va, y_tr = t_tr[:, 0], t_va[:, 0], m_tr
        else:  # every patch token is one example: (N * 64, D) -> (N * 64, 1)
            f_tr, f_va, y_tr = (
                t_tr[:, P:].flatten(0, 1),
                t_va[:, P:].flatten(0, 1),
                m_tr.reshape(-1, 1),
            )
        predict = fit_mask_probe(f_tr, y_tr, pw)
        logits = predict(f_va).reshape(m_va.shape)
        rows.append({"read": read, "iou": mask_iou(logits, m_va), "pos_weight": pw})
    return rows


def run_mask_fair(train_set, val, seeds=FEW_SEEDS, progress=True, checkpoint=None) -> dict:
    """The mask from the CLS token given a fair chance: positives weighted by negatives /
    positives, and MASK_BUDGET (4x the steps); and converged probes on frozen tokens."""
    targets = object_patches(train_set)
    pw = balance(targets)
    tr, va = TargetSet(train_set, targets), TargetSet(val, object_patches(val))
    got = compare_configs(
        {"CLS token · balanced, 4x steps": dict(read="CLS token")},
        tr,
        va,
        MASK_BUDGET,
        seeds,
        ViTConfig(**MAIN),
        progress,
        make_model=lambda o, b: MaskModel(b, o["read"]),
        score=mask_score,
        train_kwargs=dict(loss_fn=weighted_bce(pw)),
    )
    runs = [dict(r, pos_weight=pw, positives=float(targets.mean())) for r in got]
    return {"runs": runs, "frozen": frozen_mask_probes(train_set, val, checkpoint)}


# rough cost of each part, in runs of the small model on its 250-step budget
COST = {
    "finetune": 34,
    "global": 30,
    "dropout": 28,
    "no_decay_tokens": 29,
    "finetune_long": 75,
    "base_lr": 24,
    "init": 20,
    "mask_fair": 12,
    "cls_lr": 9,
}

RUNNERS = {
    "init": run_init,
    "cls_lr": run_cls_lr,
    "base_lr": run_base_lr,
    "dropout": run_dropout,
    "finetune": run_finetune,
    "global": run_global,
    "no_decay_tokens": run_no_decay_tokens,
    "finetune_long": run_finetune_long,
    "mask_fair": run_mask_fair,
}


def run_study(parts=PARTS, seeds=None, progress: bool = True) -> dict:
    """Run the named parts on the CPU; returns {part: rows} ("global": {kind: rows}).
    seeds: override every part's seeds (for a quick check)."""
    bad = [p for p in parts if p not in RUNNERS]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; choose from {PARTS}.")
    train_set, val = datasets()
    out = {}
    for part in parts:
        kw = {} if seeds is None else {"seeds": tuple(seeds)}
        out[part] = RUNNERS[part](train_set, val, progress=progress, **kw)
    return out


# --------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------


def load_record(path=None, parts=PARTS) -> dict:
    """The shipped record (data/practices_runs.json), or the one at `path`."""
    path = Path(path) if path is not None else data_file(RECORD)
    record = json.loads(path.read_text(encoding="utf-8"))
    missing = {"command", "torch", "threads", *parts} - set(record)
    if missing:
        raise ValueError(
            f"{path} is not a full record of `python -m helpers.studies.practices` (it lacks "
            f"{', '.join(sorted(missing))}): rebuild it with that command."
        )
    return record


def seed_values(rows: list[dict], name: str, key: str = "accuracy", scale: float = 1.0) -> list:
    """`key` (times `scale`) of the runs called `name`, one per seed in seed order: the runs of
    two configurations line up seed by seed, for a paired test (helpers.stats.compare)."""
    got = sorted((r["seed"], scale * r[key]) for r in rows if r["name"] == name)
    if not got:
        raise KeyError(f"the record has no run {name!r}: rebuild it.")
    return [v for _, v in got]


def find_run(rows: list[dict], name: str, seed: int) -> dict:
    """The row of run `name` with `seed`."""
    for row in rows:
        if row["name"] == name and row["seed"] == seed:
            return row
    raise KeyError(f"the record has no run {name!r} with seed {seed}: rebuild it.")


def live_check(seed: int = 0, scale: float = 10.0, progress: bool = True) -> dict:
    """Retrain one run of the "cls_lr" part (the CLS token and its slot at `scale` x the
    rate) with the study's data and budget; returns its row, to compare with the record."""
    if scale not in CLS_LR_SCALES:
        raise ValueError(f"scale={scale!r} is not one of the study's {CLS_LR_SCALES}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}.")
    train_set, val = datasets()
    lr_scale = {"cls_token": scale, "pos_embed[0]": scale}
    row = cls_runs({cls_lr_name(scale): {}}, train_set, val, (seed,), progress, lr_scale=lr_scale)
    return {k: row[0][k] for k in ("name", "seed", "accuracy")}


def _clean(x):
    """JSON-ready: tuples as lists, NaN as None."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv=None) -> dict:
    p = command_parser(
        "helpers.studies.practices",
        "Run notebook 08's experiments (best practices for the CLS token) with several seeds; "
        "write a JSON record.",
        "the JSON record to write",
        f"data/{RECORD}",
    )
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    p.add_argument("--seeds", type=int, default=0, help="seeds per run (0: each part's own)")
    p.add_argument(
        "--jobs", type=int, default=1, help="parts run side by side in this many processes"
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other parts of the record at --out (each part's command is recorded)",
    )
    a, out = parse_command(p, argv, ".json")
    parts = comma_list(p, a.only, "--only", PARTS)
    if a.seeds < 0:
        p.error(f"--seeds must be >= 0, got {a.seeds}.")
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}.")
    seeds = tuple(range(a.seeds)) if a.seeds else None
    kept, made_by = {}, {}
    if a.merge:
        if not out.is_file():
            p.error(f"--merge keeps the other parts of {out}, which does not exist: drop --merge.")
        old = json.loads(out.read_text(encoding="utf-8"))
        kept = {q: old[q] for q in PARTS if q in old and q not in parts}
        made_by = {q: part_provenance(old, q) for q in kept}
    with claim_output(out, p):  # held from here: a second run to the same --out is refused
        _run_parts(a, argv, out, parts, seeds, kept, made_by)
    print(f"{', '.join(parts)} -> {out}")
    return load_record(out, parts)


PROVENANCE = ("command", "torch", "threads", "cpu", "machine", "python")


def part_provenance(record: dict, part: str) -> dict:
    """Which command made `part` of a record, with its torch version, thread count and CPU
    (a record made part by part with --merge keeps one per part in "made_by")."""
    if part in record.get("made_by", {}):
        return record["made_by"][part]
    return {k: record[k] for k in PROVENANCE if k in record}


def _run_parts(a, argv, out, parts: list, seeds, kept=None, made_by=None) -> None:
    runs, kept, made_by = {}, dict(kept or {}), dict(made_by or {})
    now = {
        k: v for k, v in provenance("helpers.studies.practices", argv).items() if k in PROVENANCE
    }

    def write():
        for part in runs:
            made_by[part] = now
        ordered = {q: runs.get(q, kept.get(q)) for q in PARTS if q in runs or q in kept}
        done = len(runs) == len(parts) and set(ordered) == set(PARTS)
        write_record(out, argv, ordered, complete=done, made_by=made_by)

    # The record is rewritten after every part, so a crash keeps what was done. Each part
    # seeds its own runs: the numbers are the same whatever --jobs is.
    if a.jobs == 1:
        for part in parts:
            runs.update(run_study([part], seeds))
            write()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(a.jobs, ctx, _worker_init, (a.threads,)) as pool:
            first = sorted(parts, key=COST.get, reverse=True)  # the longest parts first
            todo = {pool.submit(run_study, [part], seeds, False): part for part in first}
            for done in as_completed(todo):
                runs.update(done.result())
                print(f"{todo[done]} done", flush=True)
                write()


def _worker_init(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def write_record(out, argv, runs: dict, complete: bool, made_by: dict | None = None) -> None:
    record = {
        **provenance("helpers.studies.practices", argv),
        "made_by": made_by or {},
        "model": MAIN,
        "budget": asdict(BUDGET),
        "n_train": N_TRAIN,
        "eval": "validation split (2 000 images); learning curves on its first 500",
        "budgets": {
            "dropout": dict(asdict(DROP_BUDGET), n_train=DROP_N_TRAIN),
            "finetune": asdict(FT_BUDGET),
            "finetune_long": asdict(FT_LONG_BUDGET),
            "mask_fair": asdict(MASK_BUDGET),
        },
        "finetune_target": FT_TARGET,
        "init_sources": INIT_SOURCES,
        "complete": complete,
        **runs,
    }
    atomic_write(out, (json.dumps(_clean(record), indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
