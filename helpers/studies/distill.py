"""DeiT's distillation token (Touvron et al., ICML 2021), a small CNN teacher, and the
command that trains the teacher, the distilled student and the plain ViTs of notebook 06:

    python -m helpers.studies.distill teacher --out data/cnn_teacher.pt
    python -m helpers.studies.distill student --teacher data/cnn_teacher.pt --out data/deit_student.pt
    python -m helpers.studies.distill vit --reg-tokens 0 --out data/vit_reg0.pt   # also 1 and 4
    python -m helpers.studies.distill curve --out data/distill_curve.json   # a teacher's help vs n

(see `python -m helpers.studies.distill --help`; the defaults are the shipped files' recipe).

- `DistilledViT`: the series' ViT with a second learned token, `dist_token`, right after
  CLS, its own slot in `pos_embed` (two prefix slots, then the patches) and its own linear
  head, `head_dist`. The names and the math are those of timm's `VisionTransformerDistilled`:
  our state dict loads into it, with the same logits (tests/test_distill.py).
- `hard_distillation_loss`: half cross-entropy of the CLS head with the true labels, half
  cross-entropy of the distillation head with the teacher's predicted class.
- `curve_run` / `curve_table`: the study of notebook 06 (claim 19): students trained on 250 to
  2000 images with CutMix, their distillation head on the teacher's class or on the labels
  (DeiT's two-class-token control), compared by seed.
- `SmallCNN`: the teacher, a convolutional network (local filters, pooling: the inductive
  bias the paper says the student inherits through the distillation token).

Every model and loss here trains with helpers.train.train (through its `loss_fn` hook).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import (
    atomic_write,
    build_model,
    claim_output,
    command_parser,
    parse_command,
    read_checkpoint,
    read_model_file,
    save_checkpoint,
    save_model,
)
from ..data import ShapesDataset
from ..model import VisionTransformer, ViTConfig, make_config, sincos_2d, trunc_normal_, uniform_
from ..paths import DATA_DIR, data_file
from ..runtime import provenance, seed_everything
from ..train import TrainConfig, count_parameters, evaluate, train

CNN_FORMAT = "inside-the-cls-token/cnn"


# --------------------------------------------------------------------------------------
# The distilled ViT
# --------------------------------------------------------------------------------------


class DistilledViT(VisionTransformer):
    """The series' ViT with DeiT's distillation token. Tokens: [CLS] [DIST] [patches].

        model = DistilledViT()                     # ViTConfig defaults, two heads
        cls_logits, dist_logits = model.forward_heads(model.forward_features(x))
        model(x)                                   # the average of the two heads' logits

    As in timm, `model(x)` always returns the average (timm returns both heads only when it
    trains with `set_distilled_training`; here training calls `forward_heads`).
    """

    num_prefix_tokens = 2  # CLS and DIST: what the attention helpers must skip

    def __init__(self, cfg: ViTConfig | None = None, **overrides):
        cfg = make_config(cfg, **overrides)
        if cfg.global_pool != "token" or not cfg.class_token:
            raise ValueError(
                "a distilled ViT reads its CLS and distillation tokens, so it needs "
                f'global_pool="token" and class_token=True (got global_pool='
                f"{cfg.global_pool!r}, class_token={cfg.class_token})."
            )
        if cfg.reg_tokens:
            raise ValueError(
                f"reg_tokens={cfg.reg_tokens}: the distilled ViT has exactly two prefix tokens "
                "(CLS and DIST), as timm's VisionTransformerDistilled; use reg_tokens=0."
            )
        super().__init__(cfg)
        D, T = cfg.embed_dim, 2 + cfg.num_patches
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        if cfg.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, T, D))  # slots 0, 1: CLS, DIST
        elif cfg.pos_embed == "sincos":
            table = torch.zeros(1, T, D)
            table[0, 2:] = sincos_2d(cfg.grid_size, D)  # the two prefix slots stay 0
            self.pos_embed = table  # replaces the buffer of the same name
        self.head_dist = nn.Linear(D, cfg.num_classes)
        self.init_weights()  # again, now with every parameter in place

    @torch.no_grad()
    def init_weights(self) -> None:
        """VisionTransformer.init_weights, plus DeiT's init of the distillation token:
        truncated normal, std 0.02 (as cls_token and pos_embed)."""
        super().init_weights()
        if getattr(self, "dist_token", None) is not None:
            trunc_normal_(self.dist_token, std=0.02)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> the first block's input (B, 2 + N, D)."""
        x = self.patch_embed(x)  # (B, N, D)
        B = x.shape[0]
        cls, dist = self.cls_token.expand(B, -1, -1), self.dist_token.expand(B, -1, -1)
        x = torch.cat([cls, dist, x], dim=1)  # (B, 2 + N, D): CLS at 0, DIST at 1
        if self.pos_embed is not None:
            x = x + self.pos_embed  # each prefix token has its own slot
        return x

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final tokens (B, T, D) -> (CLS head logits, distillation head logits), each (B, C)."""
        cls_out = self.head(self.head_drop(x[:, 0]))  # (B, classes)
        dist_out = self.head_dist(self.head_drop(x[:, 1]))  # (B, classes)
        return cls_out, dist_out

    def forward_head(self, x: torch.Tensor, return_attention=False):
        """Final tokens -> the average of the two heads' logits (B, classes)."""
        cls_out, dist_out = self.forward_heads(x)
        logits = (cls_out + dist_out) / 2
        return (logits, None) if return_attention else logits


class HeadView(nn.Module):
    """One head of a DistilledViT as a model of its own ("cls", "dist" or "both"), so that
    helpers.train.evaluate and the other tools score it like any classifier."""

    def __init__(self, model: DistilledViT, which: str = "both"):
        super().__init__()
        if which not in ("cls", "dist", "both"):
            raise ValueError(f'which={which!r}: choose "cls", "dist" or "both".')
        self.model, self.which = model, which

    def forward(self, x):
        cls_out, dist_out = self.model.forward_heads(self.model.forward_features(x))
        return {"cls": cls_out, "dist": dist_out, "both": (cls_out + dist_out) / 2}[self.which]


def evaluate_heads(model: DistilledViT, dataset) -> dict[str, float]:
    """Accuracy of the CLS head, the distillation head and their average on `dataset`."""
    return {w: evaluate(HeadView(model, w), dataset) for w in ("cls", "dist", "both")}


def hard_distillation_loss(cls_logits, dist_logits, labels, teacher_logits) -> torch.Tensor:
    """DeiT's hard distillation: (CE(CLS head, true labels) + CE(DIST head, teacher's class)) / 2.

    The teacher's logits count only through their argmax: a label, never a gradient.
    """
    if cls_logits.shape != dist_logits.shape or cls_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"the CLS head, distillation head and teacher logits must have one shape (B, "
            f"classes), got {tuple(cls_logits.shape)}, {tuple(dist_logits.shape)} and "
            f"{tuple(teacher_logits.shape)}: does the teacher predict the same classes?"
        )
    teacher_labels = teacher_logits.detach().argmax(dim=-1)  # (B,)
    return 0.5 * F.cross_entropy(cls_logits, labels) + 0.5 * F.cross_entropy(
        dist_logits, teacher_labels
    )


# --------------------------------------------------------------------------------------
# The CNN teacher
# --------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Three stages of 3x3 convolution, ReLU and 2x2 max-pooling (32x32 -> 16 -> 8 -> 4),
    global average pooling and a linear head. Local filters and pooling are the priors a
    ViT lacks: the inductive bias the paper says the student inherits through its teacher.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 6, width: int = 16):
        super().__init__()
        self.config = {"in_chans": in_chans, "num_classes": num_classes, "width": width}
        chans = [in_chans, width, 2 * width, 4 * width]
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], num_classes)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Kaiming-uniform convolutions (bound sqrt(6 / fan_in), for ReLU), zero biases, a
        truncated-normal head: drawn with the series' samplers, the same on every torch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                uniform_(m.weight, (6 / m.weight[0].numel()) ** 0.5)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        x = x.contiguous(memory_format=torch.channels_last)  # 2x faster convolutions on CPU
        x = self.features(x)  # (B, 4w, 4, 4)
        return self.head(x.mean(dim=(2, 3)))  # (B, classes)


def save_cnn(model: SmallCNN, path, meta: dict | None = None, record: bool = False) -> Path:
    """Write the teacher (config, weights, meta) to `path` atomically; record=True also
    writes meta as the .json record beside it, in the same write (both new, or both old)."""
    return save_model(model, path, CNN_FORMAT, dict(model.config), meta, record)


CNN_FIELDS = ("in_chans", "num_classes", "width")


def _build_cnn(config: dict) -> SmallCNN:
    for k, v in config.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{k} must be a whole number >= 1, got {v!r}")
    return SmallCNN(**config)


def load_cnn(path, device="cpu") -> tuple[SmallCNN, dict]:
    """The teacher saved by `save_cnn`, in eval mode, and its meta. The file is checked
    first (format, version, config, weights' names and shapes, built on the meta device),
    so another kind of file is refused with the loader it needs."""
    path = Path(path)
    payload = read_model_file(
        path,
        CNN_FORMAT,
        "CNN teacher",
        f"rebuild it with `python -m helpers.studies.distill teacher --out {path}`",
        CNN_FIELDS,
    )
    model = build_model(payload, _build_cnn, path, device)
    return model, payload["meta"]


def load_distilled(path, device="cpu") -> tuple[DistilledViT, dict]:
    """A DistilledViT checkpoint (saved by helpers.checkpoint.save_checkpoint), in eval mode.
    Checked as every checkpoint (helpers.checkpoint.read_checkpoint), then built on the meta
    device and filled with the file's weights (names and shapes checked)."""
    payload = read_checkpoint(path)
    if "dist_token" not in payload["state_dict"]:
        raise ValueError(
            f"{path} holds a ViT without a distillation token: load it with "
            f"helpers.checkpoint.load_checkpoint({str(path)!r})."
        )
    model = build_model(payload, lambda c: DistilledViT(ViTConfig(**c)), path, device)
    return model, payload["meta"]


# The commands that made notebook 06's shipped files (each writes a .json record beside it).
REBUILD = {
    "cnn_teacher.pt": "python -m helpers.studies.distill teacher --out data/cnn_teacher.pt "
    "--epochs 8 --threads 1",
    "deit_student.pt": "python -m helpers.studies.distill student --teacher "
    "data/cnn_teacher.pt --out data/deit_student.pt --epochs 4 --threads 1",
    **{
        f"vit_reg{r}.pt": f"python -m helpers.studies.distill vit --reg-tokens {r} --out "
        f"data/vit_reg{r}.pt --epochs 4 --threads 1"
        for r in (0, 1, 4)
    },
    "patch_vs_cls.json": "python -m helpers.studies.tokens --out data/patch_vs_cls.json --threads 1",
    "distill_curve.json": "python -m helpers.studies.distill curve --teacher data/cnn_teacher.pt "
    "--threads 1 --out data/distill_curve.json",
}


def shipped_file(name: str) -> Path:
    """The path of one of notebook 06's shipped files; a missing one names its command."""
    if name not in REBUILD:
        raise ValueError(f"{name!r} is not one of notebook 06's files: {sorted(REBUILD)}.")
    try:
        return data_file(name)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{name} is not in {DATA_DIR}: rebuild it with `{REBUILD[name]}` (in the "
            "repository root), or restore the shipped one with `git checkout -- data/`."
        ) from None


# --------------------------------------------------------------------------------------
# Training recipe: the same light augmentation for every model
# --------------------------------------------------------------------------------------


def shift_augment(x: torch.Tensor, max_shift: int = 4, step: int = 4) -> torch.Tensor:
    """Roll each image by a random multiple of `step` pixels (up to max_shift) in x and y.

    Objects sit on the 4-px patch grid, and a 4-px roll keeps them there; an object near
    the border wraps around, so its label may no longer be obvious: where the teacher's
    prediction can differ from the true label, and what a distillation head learns from.
    Draws from torch's global generator (seeded by train()).
    """
    k = max_shift // step
    shifts = (torch.randint(-k, k + 1, (len(x), 2)) * step).tolist()
    return torch.stack([img.roll(tuple(s), dims=(1, 2)) for img, s in zip(x, shifts)])


def plain_loss(model, x, y):
    """Cross-entropy on shifted images: the recipe of the teacher and the plain ViTs."""
    logits = model(shift_augment(x))
    return F.cross_entropy(logits, y), logits


def distillation_loss_fn(teacher: nn.Module):
    """A train() loss_fn for a DistilledViT: shift, then DeiT's hard distillation loss."""
    teacher.eval()

    def loss_fn(model, x, y):
        x = shift_augment(x)
        with torch.no_grad():
            t = teacher(x)  # the teacher labels the image the student sees
        cls_out, dist_out = model.forward_heads(model.forward_features(x))
        return hard_distillation_loss(cls_out, dist_out, y, t), (cls_out + dist_out) / 2

    return loss_fn


@torch.no_grad()
def agreement(a: nn.Module, b: nn.Module, images: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of images on which models a and b predict the same class."""
    same = 0
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        same += (a(x).argmax(-1) == b(x).argmax(-1)).sum().item()
    return same / len(images)


# --------------------------------------------------------------------------------------
# Does the teacher help a student with few images? (notebook 06, claim 19)
# --------------------------------------------------------------------------------------

# The study's budget: the same number of steps at every size (small sets are seen many
# times), small enough that the notebook reruns one run live in a few seconds.
CURVE_SIZES = (250, 500, 1000, 2000)
CURVE_SEEDS = (0, 1, 2, 3, 4)
CURVE_MODEL = dict(embed_dim=32, depth=2, num_heads=4)
CURVE_STEPS = 480  # a multiple of 40: whole epochs at every size
CURVE_TRAIN = TrainConfig(batch_size=50, lr=3e-3, warmup_steps=50)  # 50 divides every size
CURVE_ARMS = ("labels", "teacher")  # what the distillation head learns from


def cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al., ICCV 2019), as in DeiT's recipe: paste a random box of another
    image of the batch into each image; the label is the two one-hot labels mixed by area.

    One box per batch, its area a uniform fraction of the image (Beta(1, 1), as timm's
    default), clipped at the border. Returns the images (B, C, H, W) and soft labels
    (B, classes). Draws from torch's global generator (seeded by train()).
    """
    B, _, H, W = x.shape
    perm = torch.randperm(B)
    lam = torch.rand(()).item()  # the share of the image that stays
    cut = (1 - lam) ** 0.5
    h, w = int(H * cut), int(W * cut)
    cy, cx = torch.randint(H, ()).item(), torch.randint(W, ()).item()
    y0, y1 = max(cy - h // 2, 0), min(cy + h - h // 2, H)
    x0, x1 = max(cx - w // 2, 0), min(cx + w - w // 2, W)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    kept = 1 - (y1 - y0) * (x1 - x0) / (H * W)  # the area that stayed, after clipping
    one_hot = F.one_hot(y, num_classes).to(x.dtype)
    return x, kept * one_hot + (1 - kept) * one_hot[perm]


def curve_loss_fn(teacher: nn.Module | None, num_classes: int = 6):
    """A train() loss_fn for the data-size study: shift, CutMix, then half the CLS head's
    cross-entropy with the mixed labels, half the distillation head's with
    - the teacher's predicted class on the mixed image (teacher given: DeiT's hard
      distillation), or
    - the same mixed labels (teacher None: DeiT's control, two class tokens on one label).
    Both arms draw the same shifts and boxes for the same seed: a pair differs only in the
    distillation head's targets."""
    if teacher is not None:
        teacher.eval()

    def loss_fn(model, x, y):
        x, soft = cutmix(shift_augment(x), y, num_classes)
        cls_out, dist_out = model.forward_heads(model.forward_features(x))
        if teacher is None:
            target = soft
        else:
            with torch.no_grad():
                target = teacher(x).argmax(-1)  # the teacher labels the image the student sees
        loss = 0.5 * F.cross_entropy(cls_out, soft) + 0.5 * F.cross_entropy(dist_out, target)
        return loss, (cls_out + dist_out) / 2

    return loss_fn


@torch.no_grad()
def head_scores(model: DistilledViT, dataset, batch_size: int = 500) -> dict[str, float]:
    """Test accuracy of each read-out of a DistilledViT: the CLS head, the distillation head,
    the average of the logits (timm, and `model(x)`) and the sum of the two softmaxes (DeiT's
    own test-time rule)."""
    model.eval()
    x, y = as_dataset_tensors(dataset)
    outs = [model.forward_heads(model.forward_features(b)) for b in x.split(batch_size)]
    c, d = (torch.cat(o) for o in zip(*outs))
    preds = {
        "cls": c.argmax(-1),
        "dist": d.argmax(-1),
        "logits": (c + d).argmax(-1),
        "softmax": (c.softmax(-1) + d.softmax(-1)).argmax(-1),
    }
    return {k: (p == y).double().mean().item() for k, p in preds.items()}


def as_dataset_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a ShapesDataset or an (images, labels) pair."""
    if hasattr(dataset, "batch"):
        return dataset.batch(torch.arange(len(dataset)))
    return dataset


def curve_run(
    arm: str,
    n: int,
    seed: int,
    train_data,
    test_data,
    teacher=None,
    progress=False,
    return_model=False,
):
    """Train one run of the study: a DistilledViT (CURVE_MODEL) on the first `n` images of
    `train_data` for CURVE_STEPS steps, its distillation head on the `arm`'s targets
    ("labels" or "teacher"); returns its row: {"arm", "n", "seed", scores of head_scores,
    "accuracy" (the average of the logits), "seconds"}; with return_model=True, (row, the
    trained model)."""
    if arm not in CURVE_ARMS:
        raise ValueError(f"arm={arm!r}: choose one of {CURVE_ARMS}.")
    if arm == "teacher" and teacher is None:
        raise ValueError('arm="teacher" needs the teacher: pass teacher=load_cnn(...)[0].')
    if isinstance(n, bool) or not isinstance(n, int) or n % CURVE_TRAIN.batch_size:
        raise ValueError(
            f"n={n!r}: the study's sizes are whole multiples of the batch size "
            f"{CURVE_TRAIN.batch_size} (every step sees a full batch), e.g. {CURVE_SIZES}."
        )
    if n > len(train_data):
        raise ValueError(f"n={n} is more than the {len(train_data)} training images given.")
    epochs = CURVE_STEPS * CURVE_TRAIN.batch_size // n
    tcfg = replace(CURVE_TRAIN, epochs=epochs, n_train=n, seed=seed)
    seed_everything(seed)
    model = DistilledViT(**CURVE_MODEL)
    loss_fn = curve_loss_fn(teacher if arm == "teacher" else None)
    hist = train(model, train_data, None, tcfg, progress=progress, loss_fn=loss_fn)
    scores = head_scores(model, test_data)
    row = {"arm": arm, "n": n, "seed": seed, "accuracy": scores["logits"]}
    row.update({k: round(v, 4) for k, v in scores.items()}, seconds=round(hist.seconds[-1], 1))
    row["accuracy"] = round(row["accuracy"], 4)
    return (row, model) if return_model else row


def curve_table(rows: list[dict], key: str = "accuracy") -> list[dict]:
    """Per training-set size: each arm's accuracies (in %, by seed), and the paired
    comparison teacher - labels (helpers.stats.compare, paired by seed)."""
    from ..stats import compare

    out = []
    for n in sorted({r["n"] for r in rows}):
        by = {
            arm: {r["seed"]: 100 * r[key] for r in rows if r["n"] == n and r["arm"] == arm}
            for arm in CURVE_ARMS
        }
        seeds = sorted(set(by["labels"]) & set(by["teacher"]))
        a = [by["teacher"][s] for s in seeds]
        b = [by["labels"][s] for s in seeds]
        out.append({"n": n, "seeds": seeds, "teacher": a, "labels": b, "cmp": compare(a, b)})
    return out


def run_curve(a, argv, out) -> dict:
    """The `curve` subcommand: every (size, arm, seed) run, then the record at --out."""
    from ..progress import progress_bar

    teacher, tmeta = _load_teacher(a)
    train_ds = ShapesDataset("train", n=max(a.sizes))  # the first n of these, for each n
    test_ds = ShapesDataset("test")
    runs = [(n, arm, s) for n in a.sizes for s in a.seeds for arm in CURVE_ARMS]
    rows = []
    for n, arm, seed in progress_bar(iterable=runs, desc="runs", unit="run"):
        rows.append(curve_run(arm, n, seed, train_ds, test_ds, teacher))
    for t in curve_table(rows):
        c = t["cmp"]
        print(f"n={t['n']:>5}: teacher - labels {c.text(' points')}")
    record = {
        "rows": rows,
        "sizes": list(a.sizes),
        "seeds": list(a.seeds),
        "arms": {
            "labels": "distillation head trained on the (CutMix) labels, as the CLS head",
            "teacher": "distillation head trained on the teacher's predicted class",
        },
        "model": CURVE_MODEL,
        "steps": CURVE_STEPS,
        "train_config": {k: v for k, v in asdict(CURVE_TRAIN).items() if k not in ("seed",)},
        "augmentation": "shift_augment, then cutmix (one box per batch) for both arms",
        "teacher": {"path": str(a.teacher), "test_accuracy": tmeta.get("test_accuracy")},
        "dataset": f"the first n of ShapesDataset('train', n={max(a.sizes)}); scored on the "
        "2000 test images",
        **provenance("helpers.studies.distill", argv),
    }
    atomic_write(out, (json.dumps(record, indent=2) + "\n").encode())
    return record


def _load_teacher(a):
    """The CNN teacher of --teacher, checked (with the parser's error) before any work."""
    p = a.parser
    teacher_path = Path(a.teacher)
    if not teacher_path.is_file():
        p.error(
            f"no teacher at {a.teacher}: train it first with "
            f"`python -m helpers.studies.distill teacher --out {a.teacher}`."
        )
    try:
        return load_cnn(teacher_path)
    except ValueError as e:
        p.error(f"--teacher {a.teacher} is not a CNN teacher: {e}")


def main(argv=None) -> dict:
    p = command_parser(
        "helpers.studies.distill",
        "Train notebook 06's models on shapes-in-clutter and save each with a .json record "
        "next to it: the CNN teacher, the distilled student, plain ViTs; or (curve) the "
        "study of a teacher's help against the number of training images, as one JSON file.",
        "checkpoint path (.pt); for curve, the JSON results file",
    )
    p.add_argument("kind", choices=["teacher", "student", "vit", "curve"])
    p.add_argument("--teacher", default="data/cnn_teacher.pt", help="for kind=student, curve")
    p.add_argument("--reg-tokens", type=int, default=0, help="for kind=vit")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--depth", type=int, default=ViTConfig.depth)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", type=int, nargs="+", default=list(CURVE_SIZES), help="for curve")
    p.add_argument("--seeds", type=int, nargs="+", default=list(CURVE_SEEDS), help="for curve")
    kind = p.parse_args(argv).kind
    a, out = parse_command(p, argv, ".json" if kind == "curve" else ".pt")
    a.parser = p
    if a.reg_tokens < 0 or a.depth < 1:
        p.error("--reg-tokens must be >= 0, --depth >= 1.")
    if kind == "curve":
        bs = CURVE_TRAIN.batch_size
        if bad := [n for n in a.sizes if n < bs or n % bs or n > len_train()]:
            p.error(
                f"--sizes {' '.join(map(str, bad))}: each size must be a multiple of the batch "
                f"size {bs}, from {bs} to {len_train()} (the train split), e.g. "
                f"{' '.join(map(str, CURVE_SIZES))}."
            )
        for name, values in (("--sizes", a.sizes), ("--seeds", a.seeds)):
            if twice := sorted({v for v in values if values.count(v) > 1}):
                p.error(
                    f"{name} gives {', '.join(map(str, twice))} more than once: give each once."
                )
        if len(a.seeds) < 2:
            p.error("give at least 2 seeds (--seeds 0 1 2): the comparison is paired by seed.")
        _load_teacher(a)  # checked before the lock and any data
        with claim_output(out, p):
            return run_curve(a, argv, out)
    teacher = tmeta = None
    if a.kind == "student":  # the teacher is checked before any data are made
        teacher, tmeta = _load_teacher(a)
    try:
        tcfg = TrainConfig(epochs=a.epochs, seed=a.seed)
    except ValueError as e:
        p.error(str(e))
    with claim_output(out, p):  # held from here: a second run to the same --out is refused
        model, meta = _run(a, tcfg, teacher, tmeta, argv)
        if a.kind == "teacher":
            save_cnn(model, out, meta, record=True)
        else:
            save_checkpoint(model, out, meta, record=True)
    print(f"test accuracy {meta['test_accuracy']:.4f} ({meta['train_seconds']:.0f} s) -> {out}")
    return meta


def len_train() -> int:
    """The number of images of the train split."""
    from ..data import SPLITS

    return SPLITS["train"][1]


def _run(a, tcfg: TrainConfig, teacher, tmeta, argv) -> tuple[nn.Module, dict]:
    """Train the model `a.kind` asks for: (the model, its meta)."""
    seed_everything(a.seed)
    train_ds, val_ds, test_ds = (ShapesDataset(s) for s in ("train", "val", "test"))
    meta = {}
    if a.kind == "teacher":
        model = SmallCNN()
        hist = train(model, train_ds, val_ds, tcfg, loss_fn=plain_loss)
        meta["test_accuracy"] = round(evaluate(model, test_ds), 4)
    elif a.kind == "vit":
        model = VisionTransformer(reg_tokens=a.reg_tokens, depth=a.depth)
        hist = train(model, train_ds, val_ds, tcfg, loss_fn=plain_loss)
        meta["test_accuracy"] = round(evaluate(model, test_ds), 4)
    else:
        # The teacher was loaded (on the meta device: no random draws) before the seed was
        # set; a throwaway teacher takes the draws that building it here used to take, so
        # the student starts from the same weights as the shipped file's.
        SmallCNN(**teacher.config)
        model = DistilledViT(depth=a.depth)
        hist = train(model, train_ds, val_ds, tcfg, loss_fn=distillation_loss_fn(teacher))
        heads = evaluate_heads(model, test_ds)
        meta["test_accuracy"] = round(heads["both"], 4)
        meta["test_accuracy_heads"] = {k: round(v, 4) for k, v in heads.items()}
        meta["teacher"] = {"path": str(a.teacher), "test_accuracy": tmeta.get("test_accuracy")}
    meta.update(
        {
            "model": type(model).__name__,
            "val_accuracy": round(hist.val_acc[-1], 4),
            "train_seconds": round(hist.seconds[-1], 1),
            "parameters": count_parameters(model),
            "train_config": asdict(tcfg),
            "augmentation": "random roll by 0 or +-4 px in x and y "
            "(helpers.studies.distill.shift_augment)",
            "dataset": "shapes-in-clutter (helpers.data), seed 0, 20k train / 2k val / 2k test",
            **provenance("helpers.studies.distill", argv),
        }
    )
    return model, meta


if __name__ == "__main__":
    main()
