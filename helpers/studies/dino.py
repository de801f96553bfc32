r"""DINO in miniature (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021): a student ViT learns to match an EMA teacher on other views of
the same image, with no label anywhere; then we ask what its CLS token learned.

    python -m helpers.studies.dino --out data/dino_vit.pt --threads 1

(see `python -m helpers.studies.dino --help`; the defaults are the shipped model's recipe). The
command also runs three short variants of the recipe into the record (COLLAPSE_RUNS: no
centering, no sharpening, DINO's colour jitter); --no-centering / --no-sharpening train
the main model that way instead. The shipped run took 24 minutes on a busy 2-core machine.
The same three variants at the shipped run's full length (ABLATIONS, what notebook 07 shows):

    python -m helpers.studies.dino --ablations --out data/dino_ablations.json --threads 1

one .json record (no checkpoint), rewritten after each run; --only picks some of them. The
shipped recipe itself with two more seeds, each run beside its untrained starting point:

    python -m helpers.studies.dino --ablations --only recipe --seeds 1,2 --with-init \
        --out data/dino_seeds.json --threads 1

- `multi_crop`: two global views (random resized crops back to 32x32, random flips) and
  several local views (smaller crops at 16x16) of every image; optional colour jitter
  (`colour_jitter`, off in the shipped recipe: with it, a run as long as the shipped one
  never left the uniform output; data/dino_ablations.json holds it).
- `cls_features`: the CLS token of any view size; a 16x16 view uses the series' ViT with its
  position table resampled to the 4x4 grid (helpers.model.resample_pos_embed, notebook 02).
- `DINOHead`: MLP -> bottleneck -> L2-normalise -> weight-normalised linear layer onto K
  prototypes (the last layer's rows have norm 1: weight norm with its gain fixed to 1).
- `dino_loss`: cross-entropy between the teacher's centred, sharpened softmax and the
  student's log-softmax, over every (teacher view, student view) pair of *different* views.
- `update_center` and `ema_update`: the two moving averages; `momentum_at` the teacher's
  cosine schedule from `teacher_momentum` to 1.
- `knn_accuracy`, `linear_probe_accuracy` and `attention_jaccard`: how good the frozen CLS
  features and the last layer's CLS attention are, judged by labels and object masks that
  training never saw.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attention import get_attention
from ..checkpoint import (
    atomic_write,
    claim_output,
    comma_list,
    command_parser,
    parse_command,
    save_checkpoint,
)
from ..data import ShapesDataset
from ..model import (
    VisionTransformer,
    ViTConfig,
    as_images,
    as_labels,
    check_count,
    resample_pos_embed,
    trunc_normal_,
)
from ..probes import fit_probe, probe_accuracy
from ..progress import progress_bar
from ..runtime import (
    check_loss,
    check_seed,
    finite_number,
    model_device,
    provenance,
    require_finite,
    seed_everything,
)

# Caron et al. 2021 (the table under Fig. 4): Jaccard (%) of the 60%-mass masks of the last
# layer's CLS attention with the object masks of PASCAL VOC12 (val), ViT-S/16 trained with
# DINO, trained with labels, or untrained
PAPER_JACCARD = {"DINO ViT-S/16": 45.9, "supervised ViT-S/16": 27.3, "random ViT-S/16": 22.0}

MAX_CROP_FACTOR = 4  # a view may be at most 4x the image's side (more is surely a typo)


def _check_scale(scale, name: str = "scale") -> tuple[float, float]:
    """A share of the image area (lo, hi) with 0 < lo <= hi <= 1, or a ValueError."""
    if isinstance(scale, (str, bytes)) or not hasattr(scale, "__len__") or len(scale) != 2:
        raise ValueError(
            f"{name} must be a pair (low, high) of area shares, e.g. (0.4, 1.0), got {scale!r}."
        )
    lo, hi = (finite_number(v, name) for v in scale)
    if not 0 < lo <= hi <= 1:
        raise ValueError(
            f"{name} must be (low, high) with 0 < low <= high <= 1, got {tuple(scale)!r}: "
            "low and high are shares of the image area, e.g. (0.4, 1.0)."
        )
    return lo, hi


def _check_temp(value, name: str) -> None:
    if finite_number(value, name) <= 0:
        raise ValueError(
            f"{name} must be > 0 (a softmax temperature divides the scores), got {value!r}: "
            "DINO uses 0.1 for the student and 0.04 for the teacher."
        )


@dataclass(frozen=True)
class DINOConfig:
    """The recipe: sizes of the head, views, temperatures, momenta and the optimizer."""

    steps: int = 550
    batch_size: int = 64
    lr: float = 1e-3  # peak, after a linear warm-up; cosine to min_lr
    min_lr: float = 1e-5
    warmup_steps: int = 55
    weight_decay: float = 0.04  # cosine to weight_decay_end (DINO: 0.04 -> 0.4)
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0
    freeze_last_layer: int = 55  # steps with the prototypes frozen (DINO: the first epoch)
    out_dim: int = 256  # K prototypes
    hidden_dim: int = 256
    bottleneck_dim: int = 64
    local_crops: int = 6
    local_size: int = 16
    global_scale: tuple = (0.4, 1.0)  # share of the image area a global view keeps
    local_scale: tuple = (0.1, 0.4)
    # colour jitter (none by default: see ABLATIONS and notebook 07); DINO's: 0.1, 0.2, 0.4
    hue_jitter: float = 0.0  # hue turned by up to this share of a full turn, either way
    grey_p: float = 0.0  # share of views turned grey
    brightness: float = 0.0  # brightness scaled by 1 +- this
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04  # linear to teacher_temp over the warm-up
    center_momentum: float = 0.9
    teacher_momentum: float = 0.99  # cosine to 1 over training
    centering: bool = True
    sharpening: bool = True  # False: the teacher as warm as the student (student_temp)
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "out_dim", "hidden_dim", "bottleneck_dim"):
            check_count(getattr(self, name), name)
        if isinstance(self.local_crops, bool) or not isinstance(self.local_crops, int):
            raise ValueError(f"local_crops must be a whole number >= 0, got {self.local_crops!r}.")
        if self.local_crops < 0:
            raise ValueError(f"local_crops must be a whole number >= 0, got {self.local_crops!r}.")
        for name in ("warmup_steps", "freeze_last_layer"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {v!r}.")
        check_count(self.local_size, "local_size")
        for name in ("student_temp", "teacher_temp", "warmup_teacher_temp", "lr"):
            if not finite_number(getattr(self, name), name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        for name in ("min_lr", "weight_decay", "weight_decay_end", "clip_grad", "hue_jitter"):
            if finite_number(getattr(self, name), name) < 0:
                fix = " (0: no clipping)" if name == "clip_grad" else ""
                raise ValueError(f"{name} must be >= 0{fix}, got {getattr(self, name)!r}.")
        for name in ("center_momentum", "teacher_momentum", "grey_p", "brightness"):
            if not 0 <= finite_number(getattr(self, name), name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}.")
        for name in ("global_scale", "local_scale"):
            _check_scale(getattr(self, name), name)
        check_seed(self.seed)


# --------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------


def random_resized_crop(x: torch.Tensor, size: int, scale=(0.4, 1.0), ratio=(3 / 4, 4 / 3)):
    """A random crop of each image (share `scale` of its area, aspect `ratio`), resized to
    size x size with bilinear sampling, flipped left-right half of the time: (B, C, s, s).

    One batched affine resampling (F.affine_grid + F.grid_sample) for all images; the crop
    boxes are drawn from torch's global generator. uint8 images (0..255) are scaled to
    [0, 1] first; the size may be at most MAX_CROP_FACTOR times the image's side.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a tensor (N, C, H, W), got {type(x).__name__}.")
    if x.ndim == 3:
        raise ValueError(
            f"expected a batch of images (N, C, H, W), got one image {tuple(x.shape)}: "
            "pass x[None] (a batch of one) and take [0] of the result."
        )
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}.")
    if len(x) == 0:
        raise ValueError("no images: pass a batch (N, C, H, W) with N >= 1.")
    if x.dtype == torch.uint8:
        x = as_images(x)
    elif not x.is_floating_point():
        raise TypeError(
            f"images must be float (or uint8 in 0..255), got {x.dtype}: convert with x.float()."
        )
    check_count(size, "size")
    side = max(x.shape[-2:])
    if size > MAX_CROP_FACTOR * side:
        raise ValueError(
            f"size={size} is more than {MAX_CROP_FACTOR}x the images' side ({side}): a view "
            f"is resized to size x size; pick a size up to {MAX_CROP_FACTOR * side} (e.g. {side})."
        )
    scale = _check_scale(scale, "scale")
    if isinstance(ratio, (str, bytes)) or not hasattr(ratio, "__len__") or len(ratio) != 2:
        raise ValueError(f"ratio must be a pair (low, high) of aspect ratios, got {ratio!r}.")
    if not 0 < finite_number(ratio[0], "ratio") <= finite_number(ratio[1], "ratio"):
        raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {tuple(ratio)!r}.")
    B = len(x)
    area = torch.empty(B).uniform_(*scale)
    log_r = torch.empty(B).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    w = (area * log_r.exp()).sqrt().clamp(max=1.0)  # width and height as shares of the side
    h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = (torch.rand(B) * 2 - 1) * (1 - w)  # centre in [-1, 1] coordinates, box inside image
    cy = (torch.rand(B) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(B) < 0.5, -1.0, 1.0)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, (B, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def colour_jitter(
    x: torch.Tensor, hue: float = 0.1, grey_p: float = 0.2, brightness: float = 0.4
) -> torch.Tensor:
    """DINO-style colour jitter of RGB images (B, 3, H, W): each image's hues turned by a
    random angle of up to `hue` of a full turn either way (a rotation about the grey axis of
    RGB space), its brightness scaled by 1 +- `brightness`, and turned grey with probability
    `grey_p`."""
    B = len(x)
    angle = (torch.rand(B) * 2 - 1) * hue * 2 * math.pi
    u = torch.full((3,), 3**-0.5)  # the grey axis
    K = torch.tensor([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    c, s = angle.cos()[:, None, None], angle.sin()[:, None, None]
    R = c * torch.eye(3) + s * K + (1 - c) * torch.outer(u, u)  # (B, 3, 3) rotations
    grey = (torch.rand(B) < grey_p)[:, None, None]
    R = torch.where(grey, torch.full((3, 3), 1 / 3), R)  # the mean of the channels
    R = R * (1 + (torch.rand(B, 1, 1) * 2 - 1) * brightness)
    return torch.einsum("bij,bjhw->bihw", R, x).clamp(0, 1)


def multi_crop(x: torch.Tensor, cfg: DINOConfig) -> list[torch.Tensor]:
    """Images (B, C, 32, 32) -> [global, global, local_1, ..., local_n]: two (B, C, 32, 32)
    views with a large share of the image, then cfg.local_crops (B, C, 16, 16) small ones,
    each with its own colour jitter (for RGB images)."""
    x = as_images(x)
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}.")
    if len(x) == 0:
        raise ValueError("no images: multi_crop needs a batch (B, C, H, W) with B >= 1.")
    size = x.shape[-1]

    def jitter(v):
        if v.shape[1] != 3 or not (cfg.hue_jitter or cfg.grey_p or cfg.brightness):
            return v
        return colour_jitter(v, cfg.hue_jitter, cfg.grey_p, cfg.brightness)

    views = [jitter(random_resized_crop(x, size, cfg.global_scale)) for _ in range(2)]
    views += [
        jitter(random_resized_crop(x, cfg.local_size, cfg.local_scale))
        for _ in range(cfg.local_crops)
    ]
    return views


def cls_features(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """The final CLS token (B, D) of views of any size that the patches tile (32x32, 16x16...).

    For a view smaller than the model's images, the patch part of `pos_embed` is resampled to
    the view's grid inside the forward pass (helpers.model.resample_pos_embed), so the
    gradient reaches the model's own table. At the model's own size this is
    `model.forward_features(x)[:, 0]`.
    """
    cfg = model.cfg
    if x.shape[-1] == cfg.img_size:
        return model.forward_features(x)[:, 0]
    if x.ndim != 4 or x.shape[-1] != x.shape[-2] or x.shape[-1] % cfg.patch_size:
        raise ValueError(
            f"views must be square (B, C, s, s) with s a multiple of the patch size "
            f"{cfg.patch_size}, got {tuple(x.shape)}."
        )
    if cfg.pos_embed != "learn" or cfg.num_prefix_tokens != 1:
        raise ValueError("small views need a learned pos_embed and exactly one prefix token.")
    grid = x.shape[-1] // cfg.patch_size
    t = model.patch_embed.proj(as_images(x)).flatten(2).transpose(1, 2)  # (B, g*g, D)
    t = torch.cat([model.cls_token.expand(len(t), -1, -1), t], dim=1)  # (B, 1 + g*g, D)
    t = t + resample_pos_embed(model.pos_embed, grid, 1)  # the table of a g x g grid
    for block in model.blocks:
        t = block(t)
    return model.norm(t)[:, 0]  # (B, D)


# --------------------------------------------------------------------------------------
# The head, the loss and the two moving averages
# --------------------------------------------------------------------------------------


class DINOHead(nn.Module):
    """CLS (B, D) -> K scores: MLP (D -> hidden -> hidden -> bottleneck), L2-normalise, then
    a linear layer whose K rows are unit vectors ("prototypes"): each score is a cosine."""

    def __init__(
        self, in_dim: int, out_dim: int = 256, hidden_dim: int = 256, bottleneck_dim: int = 64
    ):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.last_layer = nn.Parameter(torch.zeros(out_dim, bottleneck_dim))  # direction only
        with torch.no_grad():
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)
            trunc_normal_(self.last_layer, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)  # (B, bottleneck), unit length
        return z @ F.normalize(self.last_layer, dim=-1).T  # (B, K), cosines in [-1, 1]


class DINOModel(nn.Module):
    """Backbone (the series' ViT; its classifier `head` is never used) + DINO head."""

    def __init__(self, vit_cfg: ViTConfig, cfg: DINOConfig):
        super().__init__()
        self.backbone = VisionTransformer(vit_cfg)
        self.dino_head = DINOHead(
            vit_cfg.embed_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim
        )

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Views, each (B, C, s, s) -> scores (len(views) * B, K), view after view."""
        sizes = sorted({v.shape[-1] for v in views}, reverse=True)
        out = {}
        for s in sizes:  # one pass per view size: the global views together, the local ones
            idx = [i for i, v in enumerate(views) if v.shape[-1] == s]
            feats = cls_features(self.backbone, torch.cat([views[i] for i in idx]))
            for i, chunk in zip(idx, self.dino_head(feats).chunk(len(idx))):
                out[i] = chunk
        return torch.cat([out[i] for i in range(len(views))])


def teacher_probs(teacher_out: torch.Tensor, center: torch.Tensor, temp: float) -> torch.Tensor:
    """Centering and sharpening: softmax((scores - center) / temp) over the K prototypes."""
    return F.softmax((teacher_out - center) / temp, dim=-1)


def dino_loss(
    student_out: torch.Tensor,
    teacher_out: torch.Tensor,
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's loss: the mean over pairs (teacher view i, student view j), i != j, of
    H(P_t(i), P_s(j)) = -sum_k P_t(i)_k log P_s(j)_k, averaged over the batch.

    student_out: (V * B, K), all V views stacked view after view (the two global views first);
    teacher_out: (2 * B, K), the teacher's scores on the two global views; center: (K,).
    The teacher's side is a constant (detached): gradients reach the student only.
    """
    _check_temp(student_temp, "student_temp")
    _check_temp(teacher_temp, "teacher_temp")
    if (
        teacher_out.ndim != 2
        or student_out.ndim != 2
        or teacher_out.shape[1] != student_out.shape[1]
    ):
        raise ValueError(
            f"student_out (V*B, K) and teacher_out (2*B, K) must share K, got "
            f"{tuple(student_out.shape)} and {tuple(teacher_out.shape)}."
        )
    if len(teacher_out) % 2 or len(student_out) % (len(teacher_out) // 2):
        raise ValueError(
            f"teacher_out holds the two global views (2*B rows), student_out V*B rows; got "
            f"{len(teacher_out)} and {len(student_out)} rows: stack the views along dim 0."
        )
    if center.shape != (teacher_out.shape[1],) and center.shape != (1, teacher_out.shape[1]):
        raise ValueError(
            f"center must be (K,) = ({teacher_out.shape[1]},), got {tuple(center.shape)}."
        )
    B = len(teacher_out) // 2
    t = teacher_probs(teacher_out.detach(), center, teacher_temp).chunk(2)  # 2 x (B, K)
    s = F.log_softmax(student_out / student_temp, dim=-1).chunk(len(student_out) // B)
    total, pairs = 0.0, 0
    for i, t_i in enumerate(t):
        for j, s_j in enumerate(s):
            if i == j:  # the same view: nothing to predict
                continue
            total = total + (-t_i * s_j).sum(-1).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float = 0.9):
    """center <- m * center + (1 - m) * mean of the teacher's scores over the batch (K,)."""
    if not 0 <= finite_number(momentum, "momentum") <= 1:
        raise ValueError(
            f"momentum must lie in [0, 1] (1: the center stays, 0: the batch mean), got "
            f"{momentum!r}; DINO uses 0.9."
        )
    return center * momentum + teacher_out.mean(0) * (1 - momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Every teacher parameter <- m * teacher + (1 - m) * student, in place."""
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}.")
    pt, ps = list(teacher.parameters()), list(student.parameters())
    if len(pt) != len(ps) or any(a.shape != b.shape for a, b in zip(pt, ps)):
        raise ValueError("teacher and student must have the same parameters (a copy of one).")
    for a, b in zip(pt, ps):
        a.mul_(momentum).add_(b.detach(), alpha=1 - momentum)


def cosine(step: int, total: int, start: float, end: float) -> float:
    """From `start` at step 0 to `end` at the last step along half a cosine."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * step / max(1, total - 1)))


def momentum_at(step: int, cfg: DINOConfig) -> float:
    """The teacher's momentum: cfg.teacher_momentum at the start, cosine to 1 at the end."""
    return cosine(step, cfg.steps, cfg.teacher_momentum, 1.0)


def schedules(step: int, cfg: DINOConfig) -> dict:
    """Learning rate, weight decay, teacher temperature and momentum at `step`."""
    if step < cfg.warmup_steps:
        lr = cfg.lr * (step + 1) / cfg.warmup_steps
    else:
        lr = cosine(step - cfg.warmup_steps, cfg.steps - cfg.warmup_steps, cfg.lr, cfg.min_lr)
    warm = min(1.0, step / max(1, cfg.warmup_steps))
    temp = cfg.warmup_teacher_temp + (cfg.teacher_temp - cfg.warmup_teacher_temp) * warm
    return {
        "lr": lr,
        "weight_decay": cosine(step, cfg.steps, cfg.weight_decay, cfg.weight_decay_end),
        "teacher_temp": temp if cfg.sharpening else cfg.student_temp,
        "momentum": momentum_at(step, cfg),
    }


def output_stats(teacher_out: torch.Tensor, center: torch.Tensor, temp: float) -> dict:
    """Collapse meters on one batch of the teacher's probabilities P (B, K):
    - entropy: mean over images of H(P) (0: every image one-hot; log K: uniform);
    - batch_entropy: H of the batch mean of P (low: all images pick the same prototypes);
    - feature_std: the std over the batch of the teacher's scores, mean over the K outputs
      (0: every image gets the same output)."""
    p = teacher_probs(teacher_out, center, temp)
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
    pm = p.mean(0)
    return {
        "entropy": ent.item(),
        "batch_entropy": -(pm * pm.clamp_min(1e-12).log()).sum().item(),
        "feature_std": teacher_out.std(0).mean().item(),
    }


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def _param_groups(model: nn.Module):
    decay = [
        p
        for n, p in model.named_parameters()
        if p.ndim >= 2 and "token" not in n and "pos_embed" not in n
    ]
    no_decay = [
        p
        for n, p in model.named_parameters()
        if not (p.ndim >= 2 and "token" not in n and "pos_embed" not in n)
    ]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_dino(
    images: torch.Tensor,
    cfg: DINOConfig | None = None,
    vit_cfg: ViTConfig | None = None,
    progress: bool = True,
    log_every: int = 10,
    stop_after: int | None = None,
) -> tuple[DINOModel, DINOModel, dict]:
    """Train a DINO student and its EMA teacher on `images` (N, C, H, W), no labels.

    Returns (student, teacher, history); history holds per step the loss and, every
    `log_every` steps, the collapse meters of `output_stats` on that step's batch.
    stop_after: run only the first steps of the cfg.steps schedule (a short demo).
    """
    cfg = cfg or DINOConfig()
    vit_cfg = vit_cfg or ViTConfig()
    check_count(log_every, "log_every")
    run = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    check_count(run, "stop_after")
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8):
        images = as_images(images)  # uint8 stays uint8 (4x smaller); batches convert it
    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}.")
    if len(images) < cfg.batch_size:
        raise ValueError(f"{len(images)} images, fewer than one batch of {cfg.batch_size}.")
    seed_everything(cfg.seed)
    student = DINOModel(vit_cfg, cfg)
    teacher = copy.deepcopy(student).requires_grad_(False)
    center = torch.zeros(cfg.out_dim)
    opt = torch.optim.AdamW(_param_groups(student), lr=cfg.lr, weight_decay=cfg.weight_decay)
    hist = {"loss": [], "log_step": [], "entropy": [], "batch_entropy": [], "feature_std": []}
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(images), generator=gen)
    pos, t0 = 0, time.perf_counter()
    bar = progress_bar(total=run, desc="DINO", unit="step", disable=not progress)
    for step in range(run):
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        x = images[order[pos : pos + cfg.batch_size]]
        pos += cfg.batch_size
        sch = schedules(step, cfg)
        for i, g in enumerate(opt.param_groups):
            g["lr"] = sch["lr"]
            g["weight_decay"] = sch["weight_decay"] if i == 0 else 0.0
        views = multi_crop(x, cfg)
        with torch.no_grad():
            t_out = teacher(views[:2])  # (2B, K): the teacher sees the global views only
        s_out = student(views)  # (V * B, K)
        loss = dino_loss(s_out, t_out, center, cfg.student_temp, sch["teacher_temp"])
        check_loss(loss, step + 1, sch["lr"])  # before the step: no weight is spoiled
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            nn.utils.clip_grad_norm_(student.parameters(), cfg.clip_grad)
        if step < cfg.freeze_last_layer:
            student.dino_head.last_layer.grad = None
        opt.step()
        ema_update(teacher, student, sch["momentum"])
        if step % log_every == 0 or step == run - 1:
            hist["log_step"].append(step)
            for k, v in output_stats(t_out, center, sch["teacher_temp"]).items():
                hist[k].append(v)
        if cfg.centering:
            center = update_center(center, t_out, cfg.center_momentum)
        hist["loss"].append(loss.item())
        bar.update(1)
    bar.close()
    hist["seconds"] = time.perf_counter() - t0
    return student.eval(), teacher.eval(), hist


# --------------------------------------------------------------------------------------
# Evaluation of frozen features and of the attention
# --------------------------------------------------------------------------------------


@torch.no_grad()
def cls_embeddings(model: VisionTransformer, images, batch_size: int = 500) -> torch.Tensor:
    """The final CLS token (after the last norm) of every image: (N, D), on the CPU."""
    check_count(batch_size)
    if len(images) == 0:
        raise ValueError("no images: pass at least one image.")
    model.eval()
    device = model_device(model)
    return torch.cat(  # uint8 images are converted batch by batch: less memory
        [
            model.forward_features(as_images(images[s : s + batch_size]).to(device))[:, 0].cpu()
            for s in range(0, len(images), batch_size)
        ]
    )


@torch.no_grad()
def knn_predict(
    train_feats,
    train_labels,
    test_feats,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
):
    """DINO's weighted k-NN classifier: cosine similarity to the bank of train features, the
    k nearest vote with weight exp(similarity / temperature); returns classes (M,).
    num_classes None: max train label + 1 (any number of classes)."""
    train_feats = require_finite(train_feats, "train_feats")
    test_feats = require_finite(test_feats, "test_feats")
    train_labels = _labels(train_labels, "train_labels")
    if not finite_number(temperature, "temperature") > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}; DINO uses 0.07.")
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError("train and test features must be (N, D) and (M, D) with the same D.")
    if len(train_labels) != len(train_feats):
        raise ValueError(f"{len(train_feats)} train features but {len(train_labels)} labels.")
    check_count(k, "k")
    if k > len(train_feats):
        raise ValueError(f"k={k} is larger than the {len(train_feats)} train features.")
    if len(test_feats) == 0 or len(train_feats) == 0:
        raise ValueError("no features: pass at least one train and one test feature.")
    needed = int(train_labels.max()) + 1
    if num_classes is None:
        num_classes = needed
    check_count(num_classes, "num_classes")
    if num_classes < needed:
        raise ValueError(
            f"num_classes={num_classes} but a train label is {needed - 1}: pass num_classes >= "
            f"{needed}, or None to count the classes from the labels."
        )
    a, b = F.normalize(train_feats.float(), dim=1), F.normalize(test_feats.float(), dim=1)
    sim, idx = (b @ a.T).topk(k, dim=1)  # (M, k)
    votes = torch.zeros(len(b), num_classes).scatter_add_(
        1, train_labels[idx], (sim / temperature).exp()
    )
    return votes.argmax(1)


def _labels(labels, name: str) -> torch.Tensor:
    """Class labels as a 1-D long tensor of indices >= 0 (helpers.model.as_labels, which
    converts any integer dtype and refuses fractional ones, plus the k-NN's own needs)."""
    t = as_labels(labels, name)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class per image), got shape {tuple(t.shape)}.")
    if len(t) and int(t.min()) < 0:
        raise ValueError(f"{name} must be class indices >= 0, got {int(t.min())}.")
    return t


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 20) -> float:
    """Accuracy of `knn_predict` (k nearest, temperature 0.07, as DINO's evaluation); the
    number of classes is counted from the labels (max label + 1 over train and test)."""
    train_labels = _labels(train_labels, "train_labels")
    test_labels = _labels(test_labels, "test_labels")
    if len(test_labels) != len(test_feats):
        raise ValueError(f"{len(test_feats)} test features but {len(test_labels)} labels.")
    if len(train_labels) == 0 or len(test_labels) == 0:
        raise ValueError("no labels: pass at least one train and one test image.")
    n = int(max(train_labels.max(), test_labels.max())) + 1
    pred = knn_predict(train_feats, train_labels, test_feats, k, num_classes=n)
    return (pred == test_labels).double().mean().item()


def linear_probe_accuracy(train_feats, train_labels, test_feats, test_labels) -> float:
    """A logistic regression on the frozen features (helpers.probes.fit_probe), test accuracy;
    the number of classes is counted from the labels (max label + 1 over train and test)."""
    train_labels = _labels(train_labels, "train_labels")
    test_labels = _labels(test_labels, "test_labels")
    if len(train_labels) == 0 or len(test_labels) == 0:
        raise ValueError("no labels: pass at least one train and one test image.")
    n = int(max(train_labels.max(), test_labels.max())) + 1
    probe = fit_probe(train_feats, train_labels, num_classes=n)
    return probe_accuracy(probe, test_feats, test_labels)


def mass_mask(maps: torch.Tensor, keep: float = 0.6) -> torch.Tensor:
    """DINO's threshold: per map (..., N), the highest-weight entries that together hold a
    share `keep` of the map's mass (the smallest set reaching it is kept, plus ties at the
    boundary as DINO's code does with a cumulative sum over the sorted weights)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep!r}.")
    maps = require_finite(maps, "the attention maps")  # a NaN map would keep nothing, silently
    p = maps / maps.sum(-1, keepdim=True).clamp_min(1e-12)
    val, idx = p.sort(dim=-1)  # ascending, as DINO's visualize_attention.py
    kept_sorted = val.cumsum(-1) > (1 - keep)
    return torch.zeros_like(kept_sorted).scatter(-1, idx, kept_sorted)


@torch.no_grad()
def attention_jaccard(
    model, images, masks, keep: float = 0.6, batch_size: int = 100
) -> torch.Tensor:
    """The paper's mask test: for each head of the last layer, the CLS row over the patches,
    thresholded to keep `keep` of its mass, upsampled to pixels (each patch -> P x P), and
    its Jaccard index (intersection over union) with the object mask. Returns (heads,),
    the mean over images, for each head. numpy images and masks are converted."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be a (N, C, H, W) tensor, float in [0, 1] or uint8.")
    if len(images) == 0:
        raise ValueError("no images: pass at least one image (N >= 1) and its mask.")
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a tensor (N, H, W), got {type(masks).__name__}.")
    check_count(batch_size)
    if masks.shape != (len(images), *images.shape[-2:]):
        raise ValueError(
            f"masks must be (N, H, W) = ({len(images)}, {images.shape[-2]}, {images.shape[-1]})."
        )
    P, pre = model.cfg.patch_size, model.cfg.num_prefix_tokens
    total = 0
    for s in range(0, len(images), batch_size):
        x = as_images(images[s : s + batch_size])  # uint8 converted one batch at a time
        _, attn = get_attention(model, x)  # (L, b, H, T, T)
        rows = attn[-1, :, :, 0, pre:]  # (b, H, N): CLS -> patches, last layer
        g = int(round(rows.shape[-1] ** 0.5))
        keep_p = mass_mask(rows, keep).reshape(*rows.shape[:2], g, g)  # (b, H, g, g)
        pix = keep_p.repeat_interleave(P, -2).repeat_interleave(P, -1)  # (b, H, 32, 32)
        m = masks[s : s + batch_size, None].bool()  # (b, 1, 32, 32)
        inter = (pix & m).sum((-2, -1)).double()
        union = (pix | m).sum((-2, -1)).double()
        total = total + (inter / union.clamp_min(1)).sum(0)
    return (total / len(images)).float()


def frozen_scores(model, bank: ShapesDataset, test: ShapesDataset) -> dict:
    """k-NN and linear-probe accuracy of the CLS features (bank -> test), and the attention
    Jaccard on the test images: the numbers the record and notebook 07 print."""
    ftr = cls_embeddings(model, bank.images)
    fte = cls_embeddings(model, test.images)
    jac = attention_jaccard(model, test.images, test.masks)
    return {
        "knn": knn_accuracy(ftr, bank.labels, fte, test.labels),
        "linear_probe": linear_probe_accuracy(ftr, bank.labels, fte, test.labels),
        "jaccard_per_head": [round(v, 4) for v in jac.tolist()],
        "jaccard_best_head": jac.max().item(),
        "jaccard_mean_heads": jac.mean().item(),
    }


DEMO_STEPS = 10


def colour_knn(model, bank: ShapesDataset, test: ShapesDataset) -> float:
    """k-NN accuracy of the CLS features for the object's colour name (six hues), not its
    shape: what else a feature may hold."""
    ftr, fte = cls_embeddings(model, bank.images), cls_embeddings(model, test.images)
    return knn_accuracy(ftr, bank.attributes["colour"], fte, test.attributes["colour"])


BANK_SIZE = 5000  # the first 5000 train images: the k-NN bank and the probe's training set


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------

REBUILD = "python -m helpers.studies.dino --out data/dino_vit.pt --threads 1"
COLLAPSE_STEPS = 120
COLLAPSE_RUNS = {  # short runs of the recipe with one change each (notebook 07: ABLATIONS)
    "no centering": {"centering": False},
    "no sharpening": {"sharpening": False},
    "with DINO's colour jitter": {"hue_jitter": 0.1, "grey_p": 0.2, "brightness": 0.4},
}


ABLATIONS = {  # full-length runs of the recipe with one change each (--ablations)
    "no centering": {"centering": False},
    "no sharpening": {"sharpening": False},
    "with DINO's colour jitter": {"hue_jitter": 0.1, "grey_p": 0.2, "brightness": 0.4},
}
RECIPE = "recipe"  # --only recipe: the shipped recipe itself (to train it with other seeds)
ABLATIONS_REBUILD = (
    "python -m helpers.studies.dino --ablations --out data/dino_ablations.json --threads 1"
)
SEEDS_REBUILD = (
    "python -m helpers.studies.dino --ablations --only recipe --seeds 1,2 --with-init "
    "--out data/dino_seeds.json --threads 1"
)
ABLATION_LOG_EVERY = 5
ABLATION_DEMO_STEPS = 3  # what notebook 07 reruns live: the first steps of each run


def main(argv=None) -> dict:
    args = sys.argv[1:] if argv is None else list(argv)
    if "--ablations" in args:  # another command with its own options: see ablations_main
        return ablations_main(args)
    p = command_parser(
        "helpers.studies.dino",
        "Train DINO-lite (student + EMA teacher, no labels) on shapes-in-clutter; save the "
        "teacher's backbone and a .json record with its frozen-feature scores and short "
        "collapse runs.",
        "checkpoint path (.pt)",
    )
    p.add_argument("--steps", type=int, default=DINOConfig.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-centering", action="store_true", help="train without centering")
    p.add_argument("--no-sharpening", action="store_true", help="teacher temperature = student's")
    p.add_argument("--collapse-steps", type=int, default=COLLAPSE_STEPS, help="0: skip them")
    p.add_argument(
        "--ablations",
        action="store_true",
        help="instead: the ABLATIONS at full length into a .json record (--ablations --help)",
    )
    a, out = parse_command(p, argv, ".pt")
    if a.collapse_steps < 0:
        p.error(f"--collapse-steps must be >= 0, got {a.collapse_steps}.")
    try:
        cfg = DINOConfig(
            steps=a.steps, seed=a.seed, centering=not a.no_centering, sharpening=not a.no_sharpening
        )
        if a.collapse_steps:
            for over in COLLAPSE_RUNS.values():
                replace(cfg, steps=a.collapse_steps, **over)  # checked now, not after training
    except ValueError as e:
        p.error(str(e))
    # Every check is above: from here --out is held, and a diverged run writes nothing.
    with claim_output(out, p):
        return _run(a, argv, out, cfg)


def _run(a, argv, out, cfg: DINOConfig) -> dict:
    """The work of `main`, once every argument is checked and --out is claimed."""
    t0 = time.perf_counter()
    train_ds = ShapesDataset("train")
    bank = ShapesDataset("train", n=BANK_SIZE)
    test_ds = ShapesDataset("test")
    images = train_ds.images  # uint8; labels are never read
    _, teacher, hist = train_dino(images, cfg)
    demo = train_dino(bank.images, cfg, progress=False, stop_after=DEMO_STEPS)[2]["loss"]
    scores = {
        k: (round(v, 4) if isinstance(v, float) else v)
        for k, v in frozen_scores(teacher.backbone, bank, test_ds).items()
    }
    colour = round(colour_knn(teacher.backbone, bank, test_ds), 4)
    collapse = {}
    if a.collapse_steps:
        for name, over in COLLAPSE_RUNS.items():
            c = replace(cfg, steps=a.collapse_steps, **over)  # the same warm-ups
            _, _, h = train_dino(images, c, progress=False, log_every=5)
            collapse[name] = {
                k: h[k] for k in ("log_step", "entropy", "batch_entropy", "feature_std")
            }
    meta = {
        "model": "DINO-lite teacher backbone (helpers.studies.dino); its classifier head is unused",
        "scores": scores,
        "eval": f"k-NN: weighted, k=20, T=0.07, cosine, bank = first {BANK_SIZE} train images; "
        "linear probe: helpers.probes.fit_probe on the same; Jaccard: last layer, 60% of the "
        "CLS attention mass, 2000 test images",
        "demo_loss": demo,
        "demo": f"the first {DEMO_STEPS} steps of this recipe on the first {BANK_SIZE} train "
        "images (what notebook 07 reruns live)",
        "loss_last": hist["loss"][-1],
        "history": {k: hist[k] for k in ("log_step", "entropy", "batch_entropy", "feature_std")},
        "colour_knn": colour,
        "loss_every10": hist["loss"][::10],
        "collapse": collapse,
        "collapse_steps": a.collapse_steps,
        "dino_config": asdict(cfg),
        "train_seconds": round(hist["seconds"], 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "dataset": "shapes-in-clutter (helpers.data), seed 0: 20k train images without labels",
        **provenance("helpers.studies.dino", argv),
    }
    save_checkpoint(teacher.backbone, out, meta, record=True)  # .pt and .json in one write
    print(
        f"k-NN {scores['knn']:.4f}, probe {scores['linear_probe']:.4f}, Jaccard best head "
        f"{scores['jaccard_best_head']:.4f} ({meta['seconds']:.0f} s) -> {out}"
    )
    return meta


def ablations_main(argv=None) -> dict:
    """`--ablations`: the recipe run as long as the shipped model (cfg.steps), once per change
    in ABLATIONS (or --only; `recipe` is the shipped recipe unchanged) and per seed of
    --seeds, each with its collapse meters every 5 steps, its per-step loss and the frozen
    scores of its teacher (--with-init: also of the untrained backbone it started from); one
    .json record, rewritten after every run (so a stopped command keeps the runs it finished;
    "complete" says whether all ran). The shipped checkpoint (data/dino_vit.pt and its .json)
    is not touched."""
    choices = {RECIPE: {}, **ABLATIONS}
    p = command_parser(
        "helpers.studies.dino",
        "Train DINO-lite once per ablation (no centering, no sharpening, DINO's colour "
        "jitter) and seed, for the shipped run's length; write a .json record of the runs.",
        "record path (.json)",
    )
    p.add_argument("--ablations", action="store_true", required=True, help="this command")
    p.add_argument("--steps", type=int, default=DINOConfig.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 1,2 (else --seed)")
    p.add_argument(
        "--only",
        default=",".join(ABLATIONS),
        help=f"comma-separated runs, from: {', '.join(choices)} (default: all but {RECIPE})",
    )
    p.add_argument(
        "--with-init",
        action="store_true",
        help="also score each run's starting point (its untrained backbone)",
    )
    a, out = parse_command(p, argv, ".json")
    names = comma_list(p, a.only, "--only", choices)
    seeds = [a.seed] if a.seeds is None else comma_list(p, a.seeds, "--seeds", convert=int)
    try:
        cfgs = {
            (n if len(seeds) == 1 else f"{n}, seed {s}"): (
                replace(DINOConfig(steps=a.steps, seed=s), **choices[n]),
                choices[n],
            )
            for n in names
            for s in seeds
        }
    except ValueError as e:
        p.error(str(e))
    with claim_output(out, p):
        return _run_ablations(argv, out, cfgs, a.with_init)


def _run_ablations(argv, out, cfgs: dict, with_init: bool = False) -> dict:
    """The work of `ablations_main`, once every argument is checked and --out is claimed."""
    train_ds = ShapesDataset("train")
    bank = ShapesDataset("train", n=BANK_SIZE)
    test_ds = ShapesDataset("test")

    def scored(model):
        return {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in frozen_scores(model, bank, test_ds).items()
        }

    runs, record = {}, {}
    for name, (cfg, change) in cfgs.items():
        _, teacher, h = train_dino(
            train_ds.images, cfg, progress=False, log_every=ABLATION_LOG_EVERY
        )
        runs[name] = {
            "change": change,
            "dino_config": asdict(cfg),
            "history": {k: h[k] for k in ("log_step", "entropy", "batch_entropy", "feature_std")},
            "loss": h["loss"],
            "scores": scored(teacher.backbone),
            "train_seconds": round(h["seconds"], 1),
        }
        if with_init:  # train_dino's starting point: the first draw after seeding
            seed_everything(cfg.seed)
            runs[name]["init_scores"] = scored(DINOModel(ViTConfig(), cfg).backbone.eval())
        record = {
            "model": "DINO-lite (helpers.studies.dino): per run, the shipped recipe with the "
            "change named, or none",
            "steps": cfg.steps,
            "log_every": ABLATION_LOG_EVERY,
            "demo_steps": ABLATION_DEMO_STEPS,
            "eval": f"k-NN: weighted, k=20, T=0.07, cosine, bank = first {BANK_SIZE} train "
            "images; linear probe: helpers.probes.fit_probe on the same; Jaccard: last layer, "
            "60% of the CLS attention mass, 2000 test images (the teacher's backbone)",
            "dataset": "shapes-in-clutter (helpers.data), seed 0: 20k train images without labels",
            "complete": len(runs) == len(cfgs),
            "runs": runs,
            **provenance("helpers.studies.dino", argv),
        }
        atomic_write(out, (json.dumps(record, indent=1) + "\n").encode())
        sc = runs[name]["scores"]
        print(
            f"{name}: k-NN {sc['knn']:.4f}, Jaccard best head {sc['jaccard_best_head']:.4f} "
            f"({h['seconds']:.0f} s) -> {out}",
            flush=True,
        )
    return record


if __name__ == "__main__":
    main()
