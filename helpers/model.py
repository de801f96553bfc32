"""A small Vision Transformer, written to be read side by side with the notebooks.

- Stem: a strided convolution (`patch_embed.proj`) cuts the image into P x P patches and
  embeds each one; a learned `cls_token` (and optional register tokens) is prepended and a
  position embedding `pos_embed` is added, with a slot for every prefix token.
- Blocks: `depth` pre-norm transformer blocks; each one mixes tokens with multi-head
  self-attention and then transforms every token on its own with an MLP.
- Residual path: x = x + attn(norm1(x)); x = x + mlp(norm2(x)). Tokens keep their width D
  all the way through, so the CLS token is a D-vector at every depth.
- Head: a final LayerNorm, then pooling (`global_pool`: "token" takes the CLS token, "avg"
  the mean of the patch tokens, "map" lets one learned query attend to the patch tokens),
  then a linear `head`.

Option names, parameter names and the math follow timm's `VisionTransformer` (LayerNorm eps
1e-6, exact GELU, qkv with bias, `fc_norm` after average pooling, `attn_pool` for "map"):
`timm.models.vision_transformer.VisionTransformer(**helpers.timm_adapter.timm_kwargs(cfg))`
builds the same model, and our state dict loads into it with the same logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GLOBAL_POOLS = ("token", "avg", "map")
POS_EMBEDS = ("learn", "sincos", "none")  # timm knows "learn" and "none"; "sincos" is ours
CLS_INITS = ("trunc_normal", "normal", "zeros", "randn")

# Names of an earlier version of this config (and of checkpoints saved with it) -> timm's.
LEGACY_NAMES = {
    "image_size": "img_size",
    "in_channels": "in_chans",
    "dim": "embed_dim",
    "heads": "num_heads",
    "pool": "global_pool",
    "dropout": "proj_drop_rate",
    "attn_dropout": "attn_drop_rate",
}
# Upper bounds on the sizes, so that a typo is refused before any weight is allocated.
_BIG = "far beyond what this series trains (a ViT-Huge has embed_dim 1280, depth 32)"
SIZE_LIMITS = {
    "img_size": (1024, "images are img_size x img_size pixels, and the series uses 32"),
    "patch_size": (1024, "a patch cannot be larger than the image"),
    "in_chans": (64, "images have 3 channels (RGB); 64 is far beyond any image"),
    "num_classes": (100_000, "the head has one row per class"),
    "embed_dim": (8192, f"every token is a vector of embed_dim numbers; 8192 is {_BIG}"),
    "depth": (64, f"every block adds its own attention and MLP weights; 64 blocks is {_BIG}"),
    "num_heads": (4096, "each head needs at least one of the embed_dim channels"),
    "reg_tokens": (
        64,
        "registers are a handful of extra tokens (Darcet et al. ablate 0 to 16 and keep 4)",
    ),
}
MAX_MLP_RATIO = 64.0
LEGACY_VALUES = {"global_pool": {"cls": "token", "gap": "avg"}, "pos_embed": {"learned": "learn"}}


@dataclass(frozen=True)
class ViTConfig:
    """Every size and option of the model, under the names timm's VisionTransformer uses
    (except `cls_init` and `pos_embed="sincos"`, which timm does not have)."""

    img_size: int = 32  # images are img_size x img_size
    patch_size: int = 4  # patches are patch_size x patch_size pixels
    in_chans: int = 3
    num_classes: int = 6
    embed_dim: int = 64  # token width D
    depth: int = 4  # number of transformer blocks
    num_heads: int = 4
    mlp_ratio: float = 2.0  # MLP hidden width = mlp_ratio * embed_dim
    class_token: bool = True
    reg_tokens: int = 0  # extra learned tokens after CLS ("registers", Darcet et al. 2024)
    global_pool: str = "token"  # "token" (CLS), "avg" (mean of patches) or "map"
    pos_embed: str = "learn"  # "learn", "sincos" (fixed 2D) or "none"
    drop_rate: float = 0.0  # dropout on the pooled feature, just before the head
    proj_drop_rate: float = 0.0  # after the attention projection and in the MLP
    attn_drop_rate: float = 0.0  # on the attention weights
    cls_init: str = "trunc_normal"  # how the CLS token starts: see init_cls_token

    def __post_init__(self):
        self._check_sizes()
        if self.img_size % self.patch_size != 0:
            raise ValueError(
                f"img_size={self.img_size} is not divisible by patch_size={self.patch_size}: "
                f"choose a patch size that divides the image size (e.g. 4 or 8 for 32)."
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}: "
                f"each head gets embed_dim // num_heads channels, so pick num_heads among the "
                f"divisors of {self.embed_dim}."
            )
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool={self.global_pool!r} is not one of {GLOBAL_POOLS}.")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError(
                'global_pool="token" pools the CLS token, so it needs class_token=True; use '
                'global_pool="avg" or "map" without one.'
            )
        if self.cls_init not in CLS_INITS:
            raise ValueError(f"cls_init={self.cls_init!r} is not one of {CLS_INITS}.")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed={self.pos_embed!r} is not one of {POS_EMBEDS}.")
        if self.in_chans < 1 or self.num_classes < 1 or self.reg_tokens < 0:
            raise ValueError("in_chans and num_classes must be >= 1, reg_tokens >= 0.")

    def _check_sizes(self) -> None:
        """Every size a whole number in a sensible range, checked before any weight exists:
        a typo such as embed_dim=1000000 would otherwise try to allocate terabytes."""
        for name, low in (
            ("img_size", 1),
            ("patch_size", 1),
            ("in_chans", 1),
            ("num_classes", 1),
            ("embed_dim", 1),
            ("depth", 1),
            ("num_heads", 1),
            ("reg_tokens", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {v!r}.")
            high, why = SIZE_LIMITS[name]
            if v > high:
                raise ValueError(
                    f"{name}={v} is above the limit of {high}: {why}. Use a smaller {name} "
                    f"(the series' model has {name}={getattr(ViTConfig, name)})."
                )
        r = self.mlp_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float, np.number)):
            raise ValueError(f"mlp_ratio must be a number > 0, got {r!r}.")
        if not (math.isfinite(r) and 0 < r <= MAX_MLP_RATIO):
            raise ValueError(
                f"mlp_ratio must be a finite number in (0, {MAX_MLP_RATIO}] (the MLP's hidden "
                f"width is mlp_ratio * embed_dim; the series uses 2.0, timm 4.0), got {r!r}."
            )
        for name in ("drop_rate", "proj_drop_rate", "attn_drop_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not 0 <= v < 1:
                raise ValueError(f"{name} is a dropout probability in [0, 1), got {v!r}.")

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens

    def to_dict(self) -> dict:
        return asdict(self)


def make_config(cfg: ViTConfig | None = None, **overrides) -> ViTConfig:
    """`cfg` (default ViTConfig()) with `overrides`; an old or unknown option name is named."""
    known = {f.name for f in fields(ViTConfig)}
    for name in overrides:
        if name in LEGACY_NAMES:
            raise TypeError(f"ViTConfig has no option {name!r}: it is now {LEGACY_NAMES[name]!r}.")
        if name not in known:
            raise TypeError(f"ViTConfig has no option {name!r}; the options: {sorted(known)}.")
    return replace(cfg or ViTConfig(), **overrides)


# --------------------------------------------------------------------------------------
# Initialization: samplers the series owns, so the same seed gives the same model on every
# torch version (torch 2.13 changed how nn.init.trunc_normal_ draws its values).
# --------------------------------------------------------------------------------------


def _open_uniform(shape) -> torch.Tensor:
    """Uniform numbers in (0, 1), float64, from torch's global generator (torch.rand)."""
    return torch.rand(shape, dtype=torch.float64) + 2.0**-54  # rand is in [0, 1 - 2^-53]


@torch.no_grad()
def normal_(t: torch.Tensor, std: float, truncate: float | None = None) -> torch.Tensor:
    """Fill `t` with Normal(0, std) values, cut at +-truncate * std when `truncate` is given.

    Inverse-CDF sampling in float64: u ~ Uniform(Phi(-a), Phi(a)), x = std * Phi^-1(u). It
    uses only torch.rand, so the values do not depend on the torch version. (A cut at 2 std,
    as here, leaves a standard deviation of 0.88 std.)
    """
    u = _open_uniform(t.shape)
    if truncate is not None:
        lo = 0.5 * (1 + math.erf(-truncate / math.sqrt(2)))  # Phi(-a)
        u = lo + (1 - 2 * lo) * u
    return t.copy_(torch.special.ndtri(u) * std)


@torch.no_grad()
def uniform_(t: torch.Tensor, bound: float) -> torch.Tensor:
    """Fill `t` with Uniform(-bound, bound) values (float64 draws, like normal_)."""
    return t.copy_((2 * _open_uniform(t.shape) - 1) * bound)


def trunc_normal_(t: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Normal(0, std) cut at +-2 std: what DeiT and timm (<= 0.4 for tokens, still for
    weights) call a truncated normal of std 0.02.

    Not quite their values: they call `trunc_normal_(t, std=.02)` with the default cut at
    absolute values +-2, which for std 0.02 is 100 std and cuts nothing, so their draws are
    those of a plain normal of std 0.02. Here the cut is where "truncated" means it, which
    leaves a standard deviation of 0.88 std.
    """
    return normal_(t, std, truncate=2.0)


@torch.no_grad()
def init_cls_token(param: torch.Tensor, how: str = "trunc_normal") -> torch.Tensor:
    """Fill a CLS token in place. The choices, and who uses them:

    - "trunc_normal": truncated normal, std 0.02, cut at 2 std (see trunc_normal_): the
      series' default. DeiT (facebookresearch/deit, on timm 0.3) and timm <= 0.4 wrote
      `trunc_normal_(cls_token, std=.02)`, whose cut at +-2 (absolute) cuts nothing.
    - "normal": normal, std 1e-6 (timm today, VisionTransformer.init_weights): practically
      zero, but not exactly.
    - "zeros": all zeros (the original ViT, Dosovitskiy et al. 2021: google-research/
      vision_transformer, Flax, `self.param('cls', nn.initializers.zeros, ...)`; timm <= 0.4
      too when asked for the "jax" init).
    - "randn": standard normal, std 1, the brief's `torch.randn`: a deliberately large start.
    Notebook 01 compares them at step 0, notebook 08 after training.
    """
    if how == "trunc_normal":
        return trunc_normal_(param, std=0.02)
    if how == "normal":
        return normal_(param, std=1e-6)
    if how == "zeros":
        return param.zero_()
    if how == "randn":
        return normal_(param, std=1.0)
    raise ValueError(f"unknown CLS init {how!r}; choose one of {CLS_INITS}.")


def sincos_2d(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embeddings (MAE / ViT-22B style), (grid*grid, dim)."""
    if dim % 4 != 0:
        raise ValueError(f"sincos position embeddings need dim divisible by 4, got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (D/4,)
    coords = torch.arange(grid_size, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (g, g) each
    out_x = xx.reshape(-1, 1) * omega  # (g*g, D/4)
    out_y = yy.reshape(-1, 1) * omega  # (g*g, D/4)
    emb = torch.cat([out_x.sin(), out_x.cos(), out_y.sin(), out_y.cos()], dim=1)  # (g*g, D)
    return emb.float()


# --------------------------------------------------------------------------------------
# The modules
# --------------------------------------------------------------------------------------


def as_images(x, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Model input from what a learner may pass: a float tensor in [0, 1] as it is; uint8
    (0..255) scaled to [0, 1]; a numpy array converted; other float types cast to `dtype`.
    Refuses lists, non-finite pixels and floats far outside [0, 1] (a forgotten / 255)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"images must be a tensor (or numpy array) of shape (B, C, H, W), got "
            f"{type(x).__name__}: stack a list with torch.stack(images)."
        )
    if x.dtype == torch.uint8:
        return x.to(dtype) / 255  # 0..255 -> [0, 1], as the dataset does
    if not x.is_floating_point():
        raise TypeError(
            f"images must be float in [0, 1] (or uint8 in 0..255), got {x.dtype}: "
            f"convert with images.float() / 255 if they hold 0..255."
        )
    x = x.to(dtype)
    if x.numel() and x.device.type != "meta":
        if not torch.isfinite(x).all():
            raise ValueError(
                "some pixels are NaN or infinite: check how the images were made (a division "
                "by zero?) before passing them to the model."
            )
        lo, hi = torch.aminmax(x)
        if lo < -1 or hi > 2:
            raise ValueError(
                f"pixel values run from {lo.item():.3g} to {hi.item():.3g}, but the model "
                f"works on images in [0, 1]: divide 0..255 values by 255 (uint8 tensors are "
                f"converted for you)."
            )
    return x


def as_labels(labels, name: str = "labels", hint: str = "") -> torch.Tensor:
    """Class indices as an int64 tensor: integer labels of any width (int32, uint8, numpy)
    are converted; float labels are accepted only when every one is a whole number, since
    truncating 0.7 or 1.7 to a class would silently train on the wrong targets. `hint` is
    appended to the message (e.g. "; for a regression, pass a loss_fn")."""
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    try:
        t = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a tensor (or array / list) of class indices, got "
            f"{type(labels).__name__}."
        ) from None
    if t.dtype == torch.int64:
        return t
    if t.dtype == torch.bool or not (t.is_floating_point() or t.is_complex()):
        return t.long()
    if t.is_complex():
        raise ValueError(f"{name} must be whole class indices 0, 1, 2, ..., got {t.dtype}.")
    bad = ~torch.isfinite(t) | (t != t.round())
    if bad.any():
        first = t[bad][0].item()
        raise ValueError(
            f"{name} must be whole class indices 0, 1, 2, ..., but {int(bad.sum())} of "
            f"{t.numel()} are not (e.g. {first:g}): a float label is not a class, and "
            f"truncating it would pick a wrong one. Pass the class of each example as an "
            f"integer tensor (for probabilities or one-hot rows (N, classes): "
            f"probs.argmax(-1)){hint}."
        )
    return t.long()


def check_count(value, name: str = "batch_size") -> None:
    """A count such as a batch size must be a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")


class PatchEmbed(nn.Module):
    """Image (B, C, H, W) -> patch tokens (B, N, D) with one strided convolution."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = as_images(x, dtype=self.proj.weight.dtype)
        if x.ndim != 4 or x.shape[1] != cfg.in_chans:
            raise ValueError(
                f"expected images of shape (B, {cfg.in_chans}, {cfg.img_size}, "
                f"{cfg.img_size}), got {tuple(x.shape)}: "
                + (
                    "add a batch dimension with x.unsqueeze(0)."
                    if x.ndim == 3
                    else f"the model was built for {cfg.in_chans} channel(s)."
                )
            )
        if x.shape[0] == 0:
            raise ValueError("the batch is empty (0 images): pass at least one image.")
        if x.shape[-2:] != (cfg.img_size, cfg.img_size):
            raise ValueError(
                f"expected {cfg.img_size}x{cfg.img_size} images, got "
                f"{x.shape[-2]}x{x.shape[-1]}: resize the images, or adapt the model with "
                f"helpers.model.adapt_to_image_size(model, {x.shape[-1]})."
            )
        x = self.proj(x)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention: returns the output, and the weights only when asked."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.attn_drop = nn.Dropout(cfg.attn_drop_rate)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.proj_drop = nn.Dropout(cfg.proj_drop_rate)

    def forward(self, x, attn_mask=None, return_attention=False):
        """x (B, T, D) -> (B, T, D); with return_attention=True: (output, weights (B, nh, T, T)).

        attn_mask: bool, broadcastable to (B, nh, T, T); True = may attend.
        """
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim)  # (B, T, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        if return_attention:
            att = (q * self.scale) @ k.transpose(-2, -1)  # (B, nh, T, T)
            if attn_mask is not None:
                att = att.masked_fill(~attn_mask, float("-inf"))
            att = att.softmax(dim=-1)  # each row sums to 1
            y = self.attn_drop(att) @ v  # (B, nh, T, hs)
        else:  # the fused kernel: same math, faster, but the weights are never materialized
            p = self.attn_drop.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        y = self.proj_drop(self.proj(y))
        return (y, att) if return_attention else y


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))  # (B, T, D)


class Block(nn.Module):
    """Pre-norm transformer block: attention mixes tokens, the MLP works per token."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.mlp = Mlp(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio), cfg.proj_drop_rate)

    def forward(self, x, attn_mask=None, return_attention=False):
        """x (B, T, D) -> (B, T, D); with return_attention=True: (x, weights (B, nh, T, T))."""
        y = self.attn(self.norm1(x), attn_mask, return_attention)
        y, att = y if return_attention else (y, None)
        x = x + y  # (B, T, D)
        x = x + self.mlp(self.norm2(x))  # (B, T, D)
        return (x, att) if return_attention else x


class AttentionPool(nn.Module):
    """Learned attention pooling ("map"): one latent query attends to the tokens.

    Same parameters and math as timm's `AttentionPoolLatent` with one latent.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        D = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.head_dim = D // cfg.num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, D))
        self.q = nn.Linear(D, D)
        self.kv = nn.Linear(D, 2 * D)
        self.proj = nn.Linear(D, D)
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.mlp = Mlp(D, int(D * cfg.mlp_ratio))

    def forward(self, x, return_attention=False):
        """Tokens (B, N, D) -> (B, D); with return_attention=True: (y, weights (B, nh, 1, N))."""
        B, N, C = x.shape
        q = self.q(self.latent.expand(B, -1, -1))  # (B, 1, D)
        q = q.reshape(B, 1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, 1, hs)
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, self.head_dim)  # (B, N, 2, nh, hs)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, N, hs)
        att = ((q * self.head_dim**-0.5) @ k.transpose(-2, -1)).softmax(-1)  # (B, nh, 1, N)
        y = (att @ v).transpose(1, 2).reshape(B, 1, C)  # (B, 1, D)
        y = self.proj(y)
        y = y + self.mlp(self.norm(y))
        y = y[:, 0]  # (B, D)
        return (y, att) if return_attention else y


def run_blocks(blocks, x: torch.Tensor, masks, return_attention: bool = False):
    """Tokens x (B, T, D) through `blocks`, block i with masks[i] (None: no mask); returns
    (x, [per block (B, nh, T, T)] when return_attention, else [])."""
    attentions = []
    for block, mask in zip(blocks, masks):
        if return_attention:
            x, att = block(x, mask, return_attention=True)  # att: (B, nh, T, T)
            attentions.append(att)
        else:
            x = block(x, mask)  # (B, T, D)
    return x, attentions


class VisionTransformer(nn.Module):
    """The series' ViT: patches and prefix tokens -> `depth` blocks -> norm -> pool -> head.

        model = VisionTransformer()                              # the shipped model's shape
        model = VisionTransformer(embed_dim=32, depth=2)         # ViTConfig overrides
        model = VisionTransformer(cfg, global_pool="avg")        # a config, then overrides

    Tokens, in order: [CLS] [registers] [patches, row by row]; T = num_prefix_tokens + N.

    - `model(x)`: logits (B, num_classes) for images x (B, C, H, W) in [0, 1].
    - `model(x, return_attention=True)`: (logits, [one (B, num_heads, T, T) per block]).
    - `attn_mask`: a bool mask (True = may attend) broadcastable to (B, num_heads, T, T)
      for every block, or a list with one mask (or None) per block.
    - `forward_features` gives the final tokens (B, T, D), `forward_head` the logits from
      them (and, with return_attention=True, the "map" pool's weights).

    Every parameter is drawn in `init_weights`, from torch's global generator: seed it
    (torch.manual_seed) and the same seed gives the same model on any torch version.
    """

    def __init__(self, cfg: ViTConfig | None = None, **overrides):
        super().__init__()
        cfg = make_config(cfg, **overrides)
        self.cfg = cfg
        D = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, D)) if cfg.reg_tokens else None
        T = cfg.num_prefix_tokens + cfg.num_patches
        if cfg.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, T, D))
        elif cfg.pos_embed == "sincos":  # fixed: a buffer, saved with the weights
            table = torch.zeros(1, T, D)
            table[0, cfg.num_prefix_tokens :] = sincos_2d(cfg.grid_size, D)  # prefix slots: 0
            self.register_buffer("pos_embed", table)
        else:
            self.pos_embed = None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        avg = cfg.global_pool == "avg"
        self.norm = nn.Identity() if avg else nn.LayerNorm(D, eps=1e-6)  # timm: norm or fc_norm
        self.attn_pool = AttentionPool(cfg) if cfg.global_pool == "map" else None
        self.fc_norm = nn.LayerNorm(D, eps=1e-6) if avg else nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(D, cfg.num_classes)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Draw every parameter, as timm's ViT does, with the series' own samplers:

        - Linear layers: truncated normal, std 0.02; biases zero (timm, DeiT).
        - Patch convolution: uniform +-1/sqrt(fan_in), PyTorch's default for Conv2d, which
          timm keeps; its larger scale makes pixels stand out from the position embeddings
          at the start, so training leaves its first plateau sooner.
        - LayerNorm: weight 1, bias 0.
        - cls_token: `cfg.cls_init` (see init_cls_token); registers and a learned pos_embed:
          truncated normal, std 0.02; the "map" latent: truncated normal, std D^-0.5.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()  # in_chans * P * P
                uniform_(module.weight, fan_in**-0.5)
                uniform_(module.bias, fan_in**-0.5)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.cls_token is not None:
            init_cls_token(self.cls_token, self.cfg.cls_init)
        if self.reg_token is not None:
            trunc_normal_(self.reg_token, std=0.02)
        if isinstance(self.pos_embed, nn.Parameter):
            trunc_normal_(self.pos_embed, std=0.02)
        if self.attn_pool is not None:
            trunc_normal_(self.attn_pool.latent, std=self.cfg.embed_dim**-0.5)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> the first block's input (B, prefix + N, D)."""
        x = self.patch_embed(x)  # (B, N, D)
        B = x.shape[0]
        prefix = [t.expand(B, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        x = torch.cat(prefix + [x], dim=1)  # (B, prefix + N, D): CLS at index 0
        if self.pos_embed is not None:
            x = x + self.pos_embed  # CLS gets its own slot, pos_embed[:, 0]
        return x

    def forward_features(self, x, attn_mask=None, return_attention=False):
        """Image -> final tokens (B, T, D) after the last norm; with return_attention=True:
        (tokens, [per block (B, nh, T, T)])."""
        x = self.embed(x)
        masks = layer_masks(attn_mask, self.cfg.depth, x.shape[1])
        x, attentions = run_blocks(self.blocks, x, masks, return_attention)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def forward_head(self, x: torch.Tensor, return_attention=False):
        """Final tokens (B, T, D) -> logits (B, classes); with return_attention=True:
        (logits, the "map" pool's weights (B, nh, 1, N), or None for the other pools)."""
        att = None
        P = self.cfg.num_prefix_tokens
        if self.cfg.global_pool == "token":
            x = x[:, 0]  # (B, D): the CLS token alone
        elif self.cfg.global_pool == "avg":
            x = x[:, P:].mean(dim=1)  # (B, D): patches only
        elif return_attention:
            x, att = self.attn_pool(x[:, P:], return_attention=True)  # (B, D)
        else:
            x = self.attn_pool(x[:, P:])  # (B, D)
        logits = self.head(self.head_drop(self.fc_norm(x)))  # (B, classes)
        return (logits, att) if return_attention else logits

    def forward(self, x, attn_mask=None, return_attention=False):
        """Logits (B, classes); with return_attention=True: (logits, [per block (B, nh, T, T)])."""
        if return_attention:
            x, attentions = self.forward_features(x, attn_mask, return_attention=True)
            return self.forward_head(x), attentions
        return self.forward_head(self.forward_features(x, attn_mask))


def check_attn_mask(attn_mask: torch.Tensor | None, num_tokens: int) -> None:
    """An attention mask must be boolean (True = may attend) and leave every query a key."""
    if attn_mask is None:
        return
    if not isinstance(attn_mask, torch.Tensor) or attn_mask.dtype != torch.bool:
        raise ValueError(
            "attn_mask must be a bool tensor (True = may attend), got "
            f"{getattr(attn_mask, 'dtype', type(attn_mask).__name__)}."
        )
    if attn_mask.shape[-2:] != (num_tokens, num_tokens):
        raise ValueError(
            f"attn_mask must end in ({num_tokens}, {num_tokens}) for {num_tokens} tokens, "
            f"got {tuple(attn_mask.shape)}."
        )
    if not attn_mask.any(dim=-1).all():
        raise ValueError(
            "attn_mask leaves some query with no key at all (its softmax would be NaN): "
            "let every token at least attend to itself."
        )


def layer_masks(attn_mask, depth: int, num_tokens: int) -> list:
    """One attention mask (or None) per block, from one mask for all or a list of `depth`."""
    if attn_mask is None or isinstance(attn_mask, torch.Tensor):
        masks = [attn_mask] * depth
    elif isinstance(attn_mask, Sequence) and len(attn_mask) == depth:
        masks = list(attn_mask)
    else:
        raise ValueError(
            f"attn_mask must be None, one bool tensor for every block, or a list of {depth} "
            f"(one per block, None where a block is unmasked); got {type(attn_mask).__name__}"
            + (f" of length {len(attn_mask)}." if isinstance(attn_mask, Sequence) else ".")
        )
    for m in masks:
        check_attn_mask(m, num_tokens)
    return masks


def resample_pos_embed(
    pos_embed: torch.Tensor, new_grid: int, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Resize the patch part of a (1, prefix + g*g, D) table to new_grid x new_grid.

    The prefix slots (CLS, registers) have no position in the image, so they are kept apart
    and copied unchanged, as timm's `resample_abs_pos_embed` does with its prefix tokens.
    """
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old_grid = math.isqrt(patches.shape[1])
    if old_grid * old_grid != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch positions do not form a square grid.")
    D = patches.shape[-1]
    grid = patches.reshape(1, old_grid, old_grid, D).permute(0, 3, 1, 2)  # (1, D, g, g)
    grid = F.interpolate(
        grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False, antialias=True
    )  # (1, D, g', g')
    patches = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, D)  # (1, g'*g', D)
    return torch.cat([prefix, patches], dim=1)


def adapt_to_image_size(model: VisionTransformer, img_size: int) -> VisionTransformer:
    """A copy of `model` for img_size x img_size inputs (same patches, resampled pos_embed)."""
    cfg = replace(model.cfg, img_size=img_size)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if cfg.pos_embed == "learn":
        state["pos_embed"] = resample_pos_embed(
            state["pos_embed"], cfg.grid_size, cfg.num_prefix_tokens
        )
    new = VisionTransformer(cfg)
    if cfg.pos_embed == "sincos":  # a fixed table: the new grid's own
        state["pos_embed"] = new.pos_embed.clone()
    new.load_state_dict(state)
    device = next(model.parameters()).device
    return new.to(device).train(model.training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
