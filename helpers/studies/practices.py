"""Notebook 08's experiments: the brief's best practices and one misconception, each tested
with several seeds. Too many runs for a notebook, so they run as a command and the results
ship in `data/`:

    python -m helpers.studies.practices --threads 1 --out data/practices_runs.json --force

(`--only init,cls_lr` runs some parts; `--jobs 2` runs parts side by side in two processes,
with the same numbers, since every part seeds its own runs). All parts take about 17 minutes
of CPU time (981 s measured, torch 2.13, one thread; 17 min 23 s of wall time with --jobs 2
on a 2-core machine shared with other work). The record holds the command, the torch
version, the thread count, the machine, every budget and one row per run. Notebook 08 loads
it (`load_record`), shows it, and retrains one run live (`live_check`) to show that the file
matches the code: bit-identical for the same torch version, thread count and kind of CPU, near
the recorded seeds elsewhere.

The parts (each a list of rows of helpers.studies.runner.compare_configs):
- "init": the CLS token drawn four ways (zeros, std 1, truncated std 0.02, std 1e-6),
  trained on notebook 04's budget: accuracy, a learning curve, how far the token moved;
- "cls_lr": the CLS token and its position slot at 0.1x / 1x / 10x the base rate;
- "base_lr": four base rates for a CLS model and a GAP model (no CLS token);
- "dropout": dropout on the pooled CLS output (timm's `drop_rate`) with 2 000 images;
- "finetune": from the shipped checkpoint to two new label sets: a linear probe, the head
  and the CLS token only, everything, and training from scratch, with learning curves;
- "global": regression and counting with CLS vs GAP heads; the object's 8x8 patch mask from
  the patch tokens vs from the CLS token alone; and linear probes on frozen features: CLS,
  the mean of the patches, and both concatenated (DINOv2's linear evaluation).
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
PARTS = ("init", "cls_lr", "base_lr", "dropout", "finetune", "global")
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
    "trunc_normal": "DeiT and timm <= 0.4: std 0.02 (here cut at 2 std)",
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

REG_TASKS = {"size": ("radius",), "position": ("cx", "cy"), "count": ("num_clutter",)}
MASK_READS = ("patch tokens", "CLS token")
PROBE_FEATURES = ("CLS", "mean of patches", "CLS + mean")
PROBE_TASKS = ("shape", "colour", "size", "position", "count")
N_PROBE = 4_000  # training images for the frozen-feature probes


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


def cls_runs(configs, train_set, val, seeds, progress, **train_kwargs) -> list[dict]:
    """compare_configs on the study's model and BUDGET, measuring how far the CLS token moved
    (the "init" and "cls_lr" parts); train_kwargs go to train()."""
    return compare_configs(
        configs,
        train_set,
        val,
        BUDGET,
        seeds,
        ViTConfig(**MAIN),
        progress,
        measure=cls_moved,
        train_kwargs=train_kwargs,
    )


def run_init(train_set, val, seeds=SEEDS, progress=True) -> list[dict]:
    configs = {how: dict(cls_init=how) for how in INITS}
    curve_val = ShapesDataset("val", n=N_CURVE)
    return cls_runs(
        configs, train_set, val, seeds, progress, val_data=curve_val, eval_every=EVAL_EVERY
    )


def cls_lr_name(scale: float) -> str:
    return f"CLS lr x{scale:g}"


def run_cls_lr(train_set, val, seeds=FEW_SEEDS, progress=True) -> list[dict]:
    rows = []
    for s in CLS_LR_SCALES:
        scale = {"cls_token": s, "pos_embed[0]": s}
        rows += cls_runs({cls_lr_name(s): {}}, train_set, val, seeds, progress, lr_scale=scale)
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


def run_finetune(train_set, val, seeds=FEW_SEEDS, progress=True, checkpoint=None) -> list[dict]:
    curve_val = ShapesDataset("val", n=N_CURVE)
    rows = []
    for task, k in FT_TASKS.items():
        tr = TargetSet(train_set, task_labels(train_set, task))
        va = TargetSet(val, task_labels(val, task))
        cv = TargetSet(curve_val, task_labels(curve_val, task))
        configs = {f"{task} · {m}": dict(method=m) for m in FT_METHODS}

        def make(overrides, base, k=k):
            return finetune_model(overrides["method"], k, checkpoint)

        got = compare_configs(
            configs,
            tr,
            va,
            FT_BUDGET,
            seeds,
            None,
            progress,
            make_model=make,
            measure=lambda model, hist, start: curve(hist),
            train_kwargs=dict(val_data=cv, eval_every=FT_EVAL_EVERY),
        )
        rows += [dict(r, task=task, method=r["name"].split(" · ")[1]) for r in got]
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


# rough cost of each part, in runs of the small model on its 250-step budget
COST = {"finetune": 34, "global": 30, "dropout": 28, "base_lr": 24, "init": 20, "cls_lr": 9}

RUNNERS = {
    "init": run_init,
    "cls_lr": run_cls_lr,
    "base_lr": run_base_lr,
    "dropout": run_dropout,
    "finetune": run_finetune,
    "global": run_global,
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
    a, out = parse_command(p, argv, ".json")
    parts = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in parts if s not in PARTS]
    if bad or not parts:
        p.error(f"--only takes parts of {','.join(PARTS)}, got {a.only!r}.")
    if twice := sorted({s for s in parts if parts.count(s) > 1}):
        p.error(
            f"--only names {', '.join(twice)} more than once: each part runs once; "
            f"give each part once (e.g. --only {','.join(dict.fromkeys(parts))})."
        )
    if a.seeds < 0:
        p.error(f"--seeds must be >= 0, got {a.seeds}.")
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}.")
    seeds = tuple(range(a.seeds)) if a.seeds else None
    with claim_output(out, p):  # held from here: a second run to the same --out is refused
        _run_parts(a, argv, out, parts, seeds)
    print(f"{', '.join(parts)} -> {out}")
    return load_record(out, parts)


def _run_parts(a, argv, out, parts: list, seeds) -> None:
    runs = {}
    # The record is rewritten after every part, so a crash keeps what was done. Each part
    # seeds its own runs: the numbers are the same whatever --jobs is.
    if a.jobs == 1:
        for part in parts:
            runs.update(run_study([part], seeds))
            write_record(out, argv, runs, complete=len(runs) == len(parts))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(a.jobs, ctx, _worker_init, (a.threads,)) as pool:
            first = sorted(parts, key=COST.get, reverse=True)  # the longest parts first
            todo = {pool.submit(run_study, [part], seeds, False): part for part in first}
            for done in as_completed(todo):
                runs.update(done.result())
                print(f"{todo[done]} done", flush=True)
                ordered = {p: runs[p] for p in parts if p in runs}
                write_record(out, argv, ordered, complete=len(runs) == len(parts))


def _worker_init(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def write_record(out, argv, runs: dict, complete: bool) -> None:
    record = {
        **provenance("helpers.studies.practices", argv),
        "model": MAIN,
        "budget": asdict(BUDGET),
        "n_train": N_TRAIN,
        "eval": "validation split (2 000 images); learning curves on its first 500",
        "budgets": {
            "dropout": dict(asdict(DROP_BUDGET), n_train=DROP_N_TRAIN),
            "finetune": asdict(FT_BUDGET),
        },
        "finetune_target": FT_TARGET,
        "init_sources": INIT_SOURCES,
        "complete": complete,
        **runs,
    }
    atomic_write(out, (json.dumps(_clean(record), indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
