"""A small Vision Transformer, written to be read side by side with the notebooks.

- Stem: a strided convolution (`patch_embed.proj`) cuts the image into P x P patches and
  embeds each one; a learned `cls_token` (and optional register tokens) is prepended and a
  position embedding `pos_embed` is added, with a slot for every prefix token.
- Blocks: `depth` pre-norm transformer blocks; each one mixes tokens with multi-head
  self-attention and then transforms every token on its own with an MLP.
- Residual path: x = x + attn(norm1(x)); x = x + mlp(norm2(x)). Tokens keep their width D
  all the way through, so the CLS token is a D-vector at every depth.
- Head: a final LayerNorm, then pooling ("cls": the CLS token, "gap": the mean of the patch
  tokens, "map": one learned query attending to the patch tokens), then a linear `head`.

Parameter names and the math follow timm's `VisionTransformer` (LayerNorm eps 1e-6, exact
GELU, qkv with bias, `fc_norm` after average pooling, `attn_pool` for "map"), so a state
dict of this model loads into a timm model of the same configuration.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

POOLS = ("cls", "gap", "map")
CLS_INITS = ("trunc_normal", "zeros", "randn")
POS_EMBEDS = ("learned", "sincos", "none")


@dataclass
class ViTConfig:
    image_size: int = 32  # images are image_size x image_size
    patch_size: int = 4  # patches are patch_size x patch_size pixels
    in_channels: int = 3
    num_classes: int = 6
    dim: int = 64  # token width D
    depth: int = 4  # number of transformer blocks
    heads: int = 4
    mlp_ratio: float = 2.0  # MLP hidden width = mlp_ratio * dim
    dropout: float = 0.0  # after the attention projection and in the MLP
    attn_dropout: float = 0.0  # on the attention weights
    pool: str = "cls"  # "cls", "gap" or "map"
    class_token: bool = True  # "gap" and "map" models may run without one
    reg_tokens: int = 0  # extra learned tokens after CLS ("registers")
    cls_init: str = "trunc_normal"  # "trunc_normal" (std 0.02), "zeros" or "randn"
    pos_embed: str = "learned"  # "learned", "sincos" (fixed 2D) or "none"

    def __post_init__(self):
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}: "
                f"choose a patch size that divides the image size (e.g. 4 or 8 for 32)."
            )
        if self.dim % self.heads != 0:
            raise ValueError(
                f"dim={self.dim} is not divisible by heads={self.heads}: each head gets "
                f"dim // heads channels, so pick heads among the divisors of {self.dim}."
            )
        if self.pool not in POOLS:
            raise ValueError(f"pool={self.pool!r} is not one of {POOLS}.")
        if self.pool == "cls" and not self.class_token:
            raise ValueError(
                'pool="cls" needs class_token=True; use pool="gap" or "map" without one.'
            )
        if self.cls_init not in CLS_INITS:
            raise ValueError(f"cls_init={self.cls_init!r} is not one of {CLS_INITS}.")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed={self.pos_embed!r} is not one of {POS_EMBEDS}.")
        if self.in_channels < 1 or self.num_classes < 1 or self.reg_tokens < 0:
            raise ValueError("in_channels and num_classes must be >= 1, reg_tokens >= 0.")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens

    def to_dict(self) -> dict:
        return asdict(self)


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


class PatchEmbed(nn.Module):
    """Image (B, C, H, W) -> patch tokens (B, N, D) with one strided convolution."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Conv2d(cfg.in_channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"expected images of shape (B, {cfg.in_channels}, {cfg.image_size}, "
                f"{cfg.image_size}), got {tuple(x.shape)}: "
                + (
                    "add a batch dimension with x.unsqueeze(0)."
                    if x.ndim == 3
                    else f"the model was built for {cfg.in_channels} channel(s)."
                )
            )
        if x.shape[-2:] != (cfg.image_size, cfg.image_size):
            raise ValueError(
                f"expected {cfg.image_size}x{cfg.image_size} images, got "
                f"{x.shape[-2]}x{x.shape[-1]}: resize the images, or adapt the model with "
                f"helpers.model.adapt_to_image_size(model, {x.shape[-1]})."
            )
        x = self.proj(x)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention. Returns the weights only when asked to."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.dim // cfg.heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.attn_drop = nn.Dropout(cfg.attn_dropout)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.proj_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, attn_mask=None, return_attention=False):
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.head_dim)  # (B, T, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        if return_attention:
            att = (q * self.scale) @ k.transpose(-2, -1)  # (B, nh, T, T)
            if attn_mask is not None:
                att = att.masked_fill(~attn_mask, float("-inf"))
            att = att.softmax(dim=-1)  # each row sums to 1
            y = self.attn_drop(att) @ v  # (B, nh, T, hs)
        else:
            att = None  # fused kernel: fast, but the weights are never materialized
            p = self.attn_drop.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.proj_drop(self.proj(y)), att


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))  # (B, T, D)


class Block(nn.Module):
    """Pre-norm transformer block: attention mixes tokens, the MLP works per token."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio), cfg.dropout)

    def forward(self, x, attn_mask=None, return_attention=False):
        y, att = self.attn(self.norm1(x), attn_mask, return_attention)
        x = x + y  # (B, T, D)
        x = x + self.mlp(self.norm2(x))  # (B, T, D)
        return x, att


class AttentionPool(nn.Module):
    """Learned attention pooling ("map"): one latent query attends to the tokens.

    Same parameters and math as timm's `AttentionPoolLatent` with one latent.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.dim // cfg.heads
        self.latent = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.q = nn.Linear(cfg.dim, cfg.dim)
        self.kv = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio))

    def forward(self, x, return_attention=False):
        B, N, C = x.shape
        q = self.q(self.latent.expand(B, -1, -1))  # (B, 1, D)
        q = q.reshape(B, 1, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, 1, hs)
        kv = self.kv(x).reshape(B, N, 2, self.heads, self.head_dim)  # (B, N, 2, nh, hs)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, N, hs)
        att = ((q * self.head_dim**-0.5) @ k.transpose(-2, -1)).softmax(-1)  # (B, nh, 1, N)
        y = (att @ v).transpose(1, 2).reshape(B, 1, C)  # (B, 1, D)
        y = self.proj(y)
        y = y + self.mlp(self.norm(y))
        y = y[:, 0]  # (B, D)
        return (y, att) if return_attention else y


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig | None = None, **overrides):
        super().__init__()
        cfg = ViTConfig(**{**(cfg.to_dict() if cfg else {}), **overrides})
        self.cfg = cfg
        D = cfg.dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, D)) if cfg.reg_tokens else None
        T = cfg.num_prefix_tokens + cfg.num_patches
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, T, D))
        elif cfg.pos_embed == "sincos":  # fixed: a buffer, saved with the weights
            table = torch.zeros(1, T, D)
            table[0, cfg.num_prefix_tokens :] = sincos_2d(cfg.grid_size, D)  # prefix slots: 0
            self.register_buffer("pos_embed", table)
        else:
            self.pos_embed = None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        gap = cfg.pool == "gap"
        self.norm = nn.Identity() if gap else nn.LayerNorm(D, eps=1e-6)  # timm: norm or fc_norm
        self.attn_pool = AttentionPool(cfg) if cfg.pool == "map" else None
        self.fc_norm = nn.LayerNorm(D, eps=1e-6) if gap else nn.Identity()
        self.head = nn.Linear(D, cfg.num_classes)
        self.apply(self._init_weights)
        self._init_tokens()

    @staticmethod
    def _init_weights(m: nn.Module):
        # As timm's ViT: Linear layers get a truncated normal (std 0.02); the patch
        # embedding conv keeps PyTorch's default init, which has a larger scale (about
        # 1/sqrt(3 * fan_in)), so pixels stand out from the position embeddings at the
        # start and training leaves its first plateau sooner.
        if isinstance(m, nn.Linear):
            trunc_normal(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.no_grad()
    def _init_tokens(self):
        cfg = self.cfg
        if self.cls_token is not None:
            init_cls_token(self.cls_token, cfg.cls_init)
        if self.reg_token is not None:
            trunc_normal(self.reg_token, std=0.02)
        if cfg.pos_embed == "learned":
            trunc_normal(self.pos_embed, std=0.02)
        if self.attn_pool is not None:
            trunc_normal(self.attn_pool.latent, std=cfg.dim**-0.5)

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
        """Image -> final tokens (B, T, D) after the last norm (and per-layer attention)."""
        x = self.embed(x)
        check_attn_mask(attn_mask, x.shape[1])
        attentions = []
        for block in self.blocks:
            x, att = block(x, attn_mask, return_attention)  # att: (B, nh, T, T) or None
            attentions.append(att)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Final tokens (B, T, D) -> logits (B, classes)."""
        if self.cfg.pool == "cls":
            x = x[:, 0]  # (B, D): the CLS token alone
        elif self.cfg.pool == "gap":
            x = x[:, self.cfg.num_prefix_tokens :].mean(dim=1)  # (B, D): patches only
        else:
            x = self.attn_pool(x[:, self.cfg.num_prefix_tokens :])  # (B, D)
        return self.head(self.fc_norm(x))

    def forward(self, x, attn_mask=None, return_attention=False):
        """Logits (B, classes). With return_attention=True: (logits, [per-layer (B, nh, T, T)]).

        attn_mask: optional bool tensor broadcastable to (B, nh, T, T); True = may attend.
        """
        if return_attention:
            x, attentions = self.forward_features(x, attn_mask, return_attention=True)
            return self.forward_head(x), attentions
        return self.forward_head(self.forward_features(x, attn_mask))


def trunc_normal(t: torch.Tensor, std: float) -> torch.Tensor:
    """Normal(0, std) cut at +-2 std. (nn.init.trunc_normal_ cuts at absolute +-2 by default,
    which for std=0.02 cuts nothing; here the cut is where "truncated" means it.)"""
    return nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


def init_cls_token(param: torch.Tensor, how: str = "trunc_normal") -> torch.Tensor:
    """Fill a CLS token in place: truncated normal std 0.02 (timm's ViT), zeros, or randn."""
    with torch.no_grad():
        if how == "trunc_normal":
            trunc_normal(param, std=0.02)
        elif how == "zeros":
            nn.init.zeros_(param)
        elif how == "randn":
            param.normal_(0.0, 1.0)
        else:
            raise ValueError(f"unknown CLS init {how!r}; choose one of {CLS_INITS}.")
    return param


def check_attn_mask(attn_mask: torch.Tensor | None, num_tokens: int) -> None:
    """An attention mask must be boolean (True = may attend) and leave every query a key."""
    if attn_mask is None:
        return
    if attn_mask.dtype != torch.bool:
        raise ValueError(
            f"attn_mask must be a bool tensor (True = may attend), got {attn_mask.dtype}."
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


def adapt_to_image_size(model: VisionTransformer, image_size: int) -> VisionTransformer:
    """A copy of `model` for image_size x image_size inputs (same patches, resampled pos_embed)."""
    cfg = ViTConfig(**{**model.cfg.to_dict(), "image_size": image_size})
    new = VisionTransformer(cfg)
    state = copy.deepcopy(model.state_dict())
    if model.pos_embed is not None:
        if cfg.pos_embed == "sincos":
            state["pos_embed"] = new.pos_embed.clone()
        else:
            state["pos_embed"] = resample_pos_embed(
                state["pos_embed"], cfg.grid_size, cfg.num_prefix_tokens
            )
    new.load_state_dict(state)
    return new.train(model.training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
