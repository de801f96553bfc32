"""The training loop, evaluation, and the command that rebuilds the shipped checkpoint:

    python -m helpers.train --out data/vit_shapes.pt

(see `python -m helpers.train --help`; the defaults are the shipped model's recipe).

Every function here runs the model where it is (see helpers.runtime for the device policy):
batches move to the model's device, results come back on the CPU.

Weight decay: AdamW decays every parameter with two or more dimensions (weight matrices,
and also the CLS token, the registers and the position table, which are (1, T, D)); biases
and LayerNorm gains are exempt. timm and MAE's fine-tuning code exempt the tokens too (timm's
`VisionTransformer.no_weight_decay()` returns {'pos_embed', 'cls_token', 'reg_token',
'dist_token'}, and its optimizer factory adds every parameter of fewer than two dimensions).
`TrainConfig(no_decay_tokens=True)` follows them (NO_DECAY_TOKENS); the default keeps the series' rule, with which every shipped checkpoint was
trained. Notebook 08 (section 2) measures the difference on its small model, both ways, paired
by seed (data/practices_runs.json, part "no_decay_tokens": its "init" and "cls_lr" runs): no
run and no verdict moved beyond the seeds' spread (every 95% interval of the difference
includes 0), so the series keeps its rule.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .checkpoint import (
    claim_output,
    command_parser,
    parse_command,
    save_checkpoint,
    save_snapshots,
)
from .data import SPLITS, ShapesDataset
from .model import (
    VisionTransformer,
    ViTConfig,
    as_images,
    as_labels,
    check_count,
    count_parameters,
)
from .progress import progress_bar
from .runtime import check_loss, model_device, provenance, seed_everything


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
    no_decay_tokens: bool = False  # True: no weight decay on NO_DECAY_TOKENS (timm's rule)

    def __post_init__(self):
        def whole(name, low):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {v!r}.")

        whole("epochs", 1), whole("batch_size", 1), whole("warmup_steps", 0)
        if self.n_train is not None:
            whole("n_train", 1)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr!r} (the default is 2e-3).")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < 1e3):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}.")
        if not isinstance(self.no_decay_tokens, bool):
            raise ValueError(
                f"no_decay_tokens must be True or False, got {self.no_decay_tokens!r}."
            )


# the names timm's VisionTransformer.no_weight_decay() returns
NO_DECAY_TOKENS = ("cls_token", "pos_embed", "reg_token", "dist_token")


def decays(name: str, p: torch.Tensor, cfg: TrainConfig) -> bool:
    """Does parameter `name` get weight decay? Those of two or more dimensions do; with
    cfg.no_decay_tokens, not the tokens of NO_DECAY_TOKENS (matched on the name's last part,
    so "vit.cls_token" of a wrapped model counts too)."""
    if p.ndim < 2:
        return False
    return not (cfg.no_decay_tokens and name.rsplit(".", 1)[-1] in NO_DECAY_TOKENS)


def param_groups(model, cfg: TrainConfig, whole: dict | None = None) -> list[dict]:
    """AdamW's parameter groups: decayed / not decayed (see `decays`), and with `whole`
    ({parameter name: factor}, from parse_lr_scale) one group per scaled parameter with its
    "lr_scale". Frozen parameters (requires_grad False) are left out."""
    whole = whole or {}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for scaled in (False, True) if whole else (False,):
        ps = [(n, p) for n, p in named if (n in whole) == scaled]
        for p_decay, wd in ((True, cfg.weight_decay), (False, 0.0)):
            params = [(n, p) for n, p in ps if decays(n, p, cfg) == p_decay]
            if scaled:
                for n, p in params:  # one group per scaled parameter: its own factor
                    groups.append({"params": [p], "weight_decay": wd, "lr_scale": whole[n]})
            else:
                groups.append({"params": [p for _, p in params], "weight_decay": wd})
    return groups


@dataclass
class History:
    """What happened during training, for plots: per step, per epoch, per evaluation."""

    step_loss: list = field(default_factory=list)  # training loss of every step
    epoch: list = field(default_factory=list)  # per epoch: its number,
    train_loss: list = field(default_factory=list)  # mean training loss,
    train_acc: list = field(default_factory=list)  # training accuracy,
    seconds: list = field(default_factory=list)  # and wall time at its end
    val_step: list = field(default_factory=list)  # per evaluation on val_data: the step,
    val_seconds: list = field(default_factory=list)  # training time so far (no evaluation),
    val_acc: list = field(default_factory=list)  # and the accuracy

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


REGRESSION_HINT = "; for targets that are not classes (a regression), pass train a loss_fn"


def as_dataset(dataset, classes: bool = True):
    """(dataset, n): a dataset with `.batch(idx)` as it is, or an (images, labels) pair as
    tensors (numpy and uint8 images are converted); an empty one is refused. classes=True:
    the labels are class indices (int32 and other integers become int64; float labels such
    as 0.7 are refused, not truncated); False: targets of any kind (a regression's)."""
    if hasattr(dataset, "batch"):
        n = len(dataset)
    else:
        try:
            images, labels = dataset
        except (TypeError, ValueError):
            raise TypeError(
                f"expected a dataset with .batch(idx) (e.g. ShapesDataset) or an (images, "
                f"labels) pair, got {type(dataset).__name__}."
            ) from None
        images = as_images(images)
        labels = as_labels(labels, hint=REGRESSION_HINT) if classes else torch.as_tensor(labels)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels: pass one each.")
        dataset, n = (images, labels), len(labels)
    if n == 0:
        raise ValueError("the dataset is empty: pass at least one image.")
    return dataset, n


@torch.no_grad()
def predict(model, images, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities (N, classes) for images (N, C, H, W), on the images' device."""
    check_count(batch_size)
    images = as_images(images)
    if len(images) == 0:
        raise ValueError("no images to predict: pass at least one image.")
    model.eval()
    device = model_device(model)
    out = [
        model(images[i : i + batch_size].to(device)).softmax(-1).to(images.device)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def predictions(model, dataset, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true classes, (N,) each, for a dataset with `.batch(idx)` or an
    (images, labels) pair of tensors, in batches."""
    check_count(batch_size)
    dataset, n = as_dataset(dataset)
    model.eval()
    device = model_device(model)
    preds, labels = [], []
    for start in range(0, n, batch_size):
        x, y = _get_batch(dataset, torch.arange(start, min(n, start + batch_size)))
        preds.append(model(x.to(device)).argmax(-1).cpu())
        labels.append(y.cpu())
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
    eval_every: int | None = None,
    loss_fn=None,
    callback=None,
    lr_scale: dict | None = None,
) -> History:
    """Train with AdamW, warm-up + cosine schedule and cross-entropy; returns a History.

    The model trains where it is (put it on a device first); batches follow it there.
    val_data: measured at the end of every epoch, or every `eval_every` steps and at the
    last one; History.val_seconds counts training time only (for "time to X% accuracy").
    The progress bar is one line, which a saved notebook keeps at 100% (helpers.progress).

    loss_fn(model, x, y) -> (loss, logits): replaces cross-entropy on model(x) (for a
    distillation loss, say); the logits are used for the training accuracy; return
    (loss, None) for a task without classes (a regression, say): train_acc is then NaN.
    callback(step, model): called after every optimizer step (to save snapshots, say); the
    model is in training mode, and the callback must not change its weights.
    lr_scale: {parameter name: factor}, e.g. {"cls_token": 10.0, "pos_embed[0]": 10.0}: that
    parameter learns at factor x the scheduled rate; "name[i]" scales only token slot i of a
    (1, T, D) parameter such as pos_embed (see `scale_slot_update`). None: one rate for all.
    """
    cfg = cfg or TrainConfig()
    device = model_device(model)
    train_data, size = as_dataset(train_data, classes=loss_fn is None)
    if val_data is not None:
        val_data, _ = as_dataset(val_data)
    if eval_every is not None:
        check_count(eval_every, "eval_every")
    for name, fn in (("loss_fn", loss_fn), ("callback", callback)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a function, got {type(fn).__name__}.")
    seed_everything(cfg.seed)
    n = size if cfg.n_train is None else min(cfg.n_train, size)
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size={cfg.batch_size} is larger than the {n} training images, so an epoch "
            f"would have no step: use a batch size of at most {n}."
        )
    total = steps_per_epoch * cfg.epochs
    every = eval_every or steps_per_epoch
    whole, slots = parse_lr_scale(model, lr_scale)
    opt = torch.optim.AdamW(param_groups(model, cfg, whole), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    hist = History()
    start, step, compute = time.perf_counter(), 0, 0.0
    bar = progress_bar(total, desc="training", unit="step", disable=not progress)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        run_loss, run_correct = 0.0, 0
        for b in range(steps_per_epoch):
            t_step = time.perf_counter()
            x, y = _get_batch(train_data, order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            if loss_fn is None and y.dtype != torch.int64:  # cross-entropy wants int64 classes
                y = as_labels(y, hint=REGRESSION_HINT)  # int32 -> int64; 0.7 is refused
            x, y = x.to(device), y.to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg) * group.get("lr_scale", 1.0)
            if loss_fn is None:
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            else:
                loss, logits = loss_fn(model, x, y)
            check_loss(loss, step + 1, opt.param_groups[0]["lr"])  # before the step spoils it
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if slots:
                with scale_slot_update(slots):
                    opt.step()
            else:
                opt.step()
            step += 1
            if callback is not None:
                callback(step, model)
            compute += time.perf_counter() - t_step
            if val_data is not None and (step % every == 0 or step == total):
                hist.val_step.append(step)
                hist.val_seconds.append(compute)
                hist.val_acc.append(evaluate(model, val_data))
                model.train()
            hist.step_loss.append(loss.item())
            run_loss += loss.item() * len(y)
            if logits is not None:
                run_correct += (logits.argmax(-1) == y).sum().item()
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
        seen = steps_per_epoch * cfg.batch_size
        hist.epoch.append(epoch + 1)
        hist.train_loss.append(run_loss / seen)
        hist.train_acc.append(run_correct / seen if logits is not None else math.nan)
        hist.seconds.append(time.perf_counter() - start)
        post = {"epoch": epoch + 1, "loss": f"{hist.train_loss[-1]:.3f}"}
        if hist.val_acc:
            post["val_acc"] = f"{hist.val_acc[-1]:.3f}"
        bar.set_postfix(post)
    bar.close()
    model.eval()
    return hist


def parse_lr_scale(model, lr_scale) -> tuple[dict, list]:
    """Check `lr_scale` ({parameter name or "name[slot]": factor}) against the model.

    Returns ({name: factor} for whole parameters, [(parameter, slot, factor)] for slots)."""
    if lr_scale is None:
        return {}, []
    if not isinstance(lr_scale, dict):
        raise TypeError(
            f'lr_scale must be a dict such as {{"cls_token": 10.0}}, got {type(lr_scale).__name__}.'
        )
    params = dict(model.named_parameters())
    whole, slots = {}, []
    for key, factor in lr_scale.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
            raise ValueError(f"lr_scale[{key!r}] must be a number > 0, got {factor!r}.")
        name, _, rest = str(key).partition("[")
        if name not in params:
            raise ValueError(
                f"lr_scale names {name!r}, which is not a parameter of this model; its "
                f"parameters include {sorted(params)[:6]} ..."
            )
        if not rest:
            whole[name] = float(factor)
            continue
        p = params[name]
        try:
            slot = int(rest.rstrip("]"))
        except ValueError:
            raise ValueError(f'lr_scale key {key!r}: write a token slot as "{name}[0]".') from None
        if not rest.endswith("]") or p.ndim != 3 or not 0 <= slot < p.shape[1]:
            raise ValueError(
                f"lr_scale key {key!r}: a slot needs a (1, T, D) parameter and 0 <= slot < T "
                f"({name} has shape {tuple(p.shape)})."
            )
        if factor != 1:  # a factor of 1 changes nothing: leave the step as AdamW made it
            slots.append((p, slot, float(factor)))
    if any(p is params[n] for p, _, _ in slots for n in whole):
        raise ValueError("lr_scale scales a parameter and one of its slots: choose one.")
    return whole, slots


class scale_slot_update:
    """Around an optimizer step: multiply the change of each (parameter, slot) by its factor.

    AdamW's step is linear in the learning rate (the moments do not depend on it), so a
    slot whose change is scaled by s moved exactly as with s x the rate, up to rounding."""

    def __init__(self, slots):
        self.slots = slots

    def __enter__(self):
        self.before = [p.detach()[:, i].clone() for p, i, _ in self.slots]

    def __exit__(self, *exc):
        if exc[0] is None:
            with torch.no_grad():
                for (p, i, s), old in zip(self.slots, self.before):
                    p[:, i] = old + s * (p[:, i] - old)
        return False


class _LastSnapshot(Exception):
    """Raised by the snapshot callback after the last requested step: training stops there."""


def _train_snapshots(model, train_ds, test_ds, tcfg, steps, out) -> dict:
    """Train with the full recipe's schedule, keep the weights at each of `steps`, and stop
    after the last one (the steps before it are exactly those of the full run)."""
    states = {}

    def keep(step, m):
        if step in steps:
            states[step] = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            if step == steps[-1]:
                raise _LastSnapshot

    start = time.perf_counter()
    try:
        train(model, train_ds, None, tcfg, callback=keep)
    except _LastSnapshot:
        pass
    seconds = time.perf_counter() - start
    accuracy = {}
    for step, state in states.items():
        model.load_state_dict(state)
        accuracy[str(step)] = round(evaluate(model, test_ds), 4)
    return {
        "snapshot_test_accuracy": accuracy,
        "train_seconds": round(seconds, 1),
        "states": states,
    }


def parse_steps(text: str) -> list[int]:
    """ "50,150,450" -> [50, 150, 450]: distinct optimizer steps >= 1, in increasing order."""
    try:
        steps = sorted({int(t) for t in str(text).split(",") if t.strip()})
    except ValueError:
        raise ValueError(
            f"--snapshots takes whole numbers separated by commas, e.g. 50,150,450; got {text!r}."
        ) from None
    if not steps or steps[0] < 1:
        raise ValueError(f"--snapshots needs steps >= 1, e.g. 50,150,450; got {text!r}.")
    return steps


def confusion_counts(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The confusion matrix of predictions already made: (classes, classes) counts."""
    pred, y = torch.as_tensor(pred).flatten().cpu(), torch.as_tensor(y).flatten().cpu()
    if pred.shape != y.shape:
        raise ValueError(f"{len(pred)} predictions but {len(y)} labels: pass one each.")
    k = num_classes
    return torch.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def main(argv=None) -> dict:
    p = command_parser(
        "helpers.train",
        "Train the tiny ViT on shapes-in-clutter and save a checkpoint, with its record next "
        "to it as a .json file (the defaults rebuild data/vit_shapes.pt).",
        "checkpoint path (.pt)",
        "data/vit_shapes.pt",
    )
    p.add_argument("--global-pool", default="token", choices=["token", "avg", "map"])
    p.add_argument("--no-class-token", action="store_true")
    for name, val in asdict(TrainConfig()).items():
        if isinstance(val, bool):
            p.add_argument(
                f"--{name.replace('_', '-')}",
                action="store_true",
                help="no weight decay on the CLS token, the registers and pos_embed (timm's "
                "rule; the default decays them, as every shipped checkpoint was trained)",
            )
        elif name != "n_train":
            p.add_argument(f"--{name.replace('_', '-')}", type=type(val), default=val)
    for name in ("embed_dim", "depth", "num_heads"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(ViTConfig, name))
    p.add_argument(
        "--snapshots",
        default=None,
        metavar="STEPS",
        help="comma-separated optimizer steps, e.g. 50,150,450: --out then holds the weights "
        "at each of these steps (helpers.checkpoint.load_snapshots) instead of the final model; "
        "training follows the full recipe's schedule and stops after the last of them",
    )
    # Every check before any work: a bad number or path costs nothing and destroys nothing.
    a, out = parse_command(p, argv, ".pt")
    try:
        steps = parse_steps(a.snapshots) if a.snapshots is not None else None
    except ValueError as e:
        p.error(str(e))
    try:
        tcfg = TrainConfig(**{k: getattr(a, k) for k in asdict(TrainConfig()) if k != "n_train"})
        if a.depth < 1 or a.embed_dim < 1:
            raise ValueError("--depth and --embed-dim must be >= 1.")
        mcfg = ViTConfig(
            embed_dim=a.embed_dim,
            depth=a.depth,
            num_heads=a.num_heads,
            global_pool=a.global_pool,
            class_token=not a.no_class_token,
        )
    except ValueError as e:
        p.error(str(e))
    if tcfg.batch_size > SPLITS["train"][1]:
        p.error(f"--batch-size {tcfg.batch_size} is larger than the {SPLITS['train'][1]} images.")
    total = SPLITS["train"][1] // tcfg.batch_size * tcfg.epochs
    if steps and steps[-1] > total:
        p.error(f"--snapshots step {steps[-1]} is past the last step ({total}) of this run.")
    with claim_output(out, p):  # held from here: a second run to the same --out is refused
        seed_everything(tcfg.seed)
        model = VisionTransformer(mcfg)
        train_ds, val_ds, test_ds = (ShapesDataset(s) for s in ("train", "val", "test"))
        common = {
            "parameters": count_parameters(model),
            "train_config": asdict(tcfg),
            "dataset": "shapes-in-clutter (helpers.data), seed 0, 20k train / 2k val / 2k test",
            **provenance("helpers.train", argv),
        }
        if steps:
            meta = _train_snapshots(model, train_ds, test_ds, tcfg, steps, out)
            meta.update(common)
            save_snapshots(model.cfg, meta.pop("states"), out, meta, record=True)
            print(f"test accuracy at steps {meta['snapshot_test_accuracy']} -> {out}")
            return meta
        hist = train(model, train_ds, val_ds, tcfg)
        test_acc = evaluate(model, test_ds)
        meta = {
            "test_accuracy": round(test_acc, 4),
            "val_accuracy": round(hist.val_acc[-1], 4),
            "train_seconds": round(hist.seconds[-1], 1),
            **common,
        }
        save_checkpoint(model, out, meta, record=True)
        print(f"test accuracy {test_acc:.4f}  ({hist.seconds[-1]:.0f} s of training) -> {out}")
        return meta


if __name__ == "__main__":
    main()
