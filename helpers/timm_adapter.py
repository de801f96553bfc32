"""Everything the series knows about timm's VisionTransformer, in one place.

- `timm_kwargs(cfg)`: the keyword arguments that build the same model in timm, so that
  `VisionTransformer(**timm_kwargs(model.cfg)).load_state_dict(model.state_dict())` works.
- `TimmViT(timm_model)`: gives a timm ViT the series' own protocol (a `cfg`, and
  `forward(x, return_attention=True)` returning the weights of every block), so the
  attention tools and the explorer read a timm model as they read ours. `adapt(model)`
  wraps a timm ViT and returns any other model unchanged.
- `import_timm_vit()`: timm's class, importable where torchvision is missing.

timm is optional: nothing here imports it until a function needs it, and nothing in the
series needs it to run. This module imports nothing of `helpers.attention` or the explorer.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

import torch
import torch.nn as nn

from .model import GLOBAL_POOLS, ViTConfig


def timm_kwargs(cfg: ViTConfig) -> dict:
    """timm VisionTransformer arguments for a ViTConfig: the same names, less `cls_init`
    (an initialization choice, not part of the model) and with "sincos" as "learn" (a fixed
    table loads into timm's learned one)."""
    kw = cfg.to_dict()
    kw.pop("cls_init")
    if kw["pos_embed"] == "sincos":
        kw["pos_embed"] = "learn"
    return kw


def is_timm_vit(model) -> bool:
    """True for a timm VisionTransformer (or subclass)."""
    return any(
        c.__name__ == "VisionTransformer" and c.__module__.startswith("timm.")
        for c in type(model).__mro__
    )


def config_of(timm_model) -> ViTConfig:
    """The ViTConfig that describes a timm VisionTransformer."""
    pe, block = timm_model.patch_embed, timm_model.blocks[0]
    if pe.img_size[0] != pe.img_size[1] or pe.patch_size[0] != pe.patch_size[1]:
        raise NotImplementedError("only square images and patches are supported.")
    pool = timm_model.global_pool
    if pool not in GLOBAL_POOLS:
        raise NotImplementedError(f"timm's global_pool={pool!r} has no counterpart here.")
    D = timm_model.embed_dim
    return ViTConfig(
        img_size=int(pe.img_size[0]),
        patch_size=int(pe.patch_size[0]),
        in_chans=int(pe.proj.in_channels),
        num_classes=int(timm_model.num_classes),
        embed_dim=int(D),
        depth=len(timm_model.blocks),
        num_heads=int(block.attn.num_heads),
        mlp_ratio=block.mlp.fc1.out_features / D,
        class_token=timm_model.cls_token is not None,
        reg_tokens=int(getattr(timm_model, "num_reg_tokens", 0)),
        global_pool=pool,
        pos_embed="learn" if timm_model.pos_embed is not None else "none",
    )


def _block_attention(block, x: torch.Tensor) -> torch.Tensor:
    """The softmax weights (B, heads, T, T) of a timm Block's attention on its input x,
    computed from the block's own parameters (norm1, qkv, q_norm, k_norm, scale)."""
    if type(block).__name__ != "Block":
        raise NotImplementedError(
            f"{type(block).__name__} is not timm's pre-norm Block: only blocks computed as "
            f"x + attn(norm1(x)) can be read."
        )
    attn = block.attn
    needed = ("qkv", "num_heads", "head_dim", "scale", "q_norm", "k_norm")
    if not all(hasattr(attn, n) for n in needed) or getattr(attn, "gate", None) is not None:
        raise NotImplementedError(
            f"{type(attn).__name__} is not timm's plain Attention (fused qkv, optional q/k "
            f"norm): its weights cannot be read."
        )
    h = block.norm1(x)
    B, T, _ = h.shape
    qkv = attn.qkv(h).reshape(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)  # each (B, nh, T, hs)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, nh, T, T)


class TimmViT(nn.Module):
    """A timm VisionTransformer with the series' protocol: `cfg` and `return_attention`.

    timm's Attention uses the fused kernel, which never materializes the weights (and skips
    forward hooks on any inner softmax), so with return_attention=True this runs the blocks
    one by one and, before each block, computes its attention weights explicitly from the
    block's own parameters. The tokens then go through the block itself, so the logits are
    exactly timm's.
    """

    def __init__(self, timm_model: nn.Module):
        super().__init__()
        if not is_timm_vit(timm_model):
            raise TypeError(f"{type(timm_model).__name__} is not a timm VisionTransformer.")
        self.timm_model = timm_model
        self.cfg = config_of(timm_model)

    def forward(self, x, attn_mask=None, return_attention=False):
        if attn_mask is not None:
            raise NotImplementedError("attention masks are supported for the series' ViT only.")
        m = self.timm_model
        if not return_attention:
            return m(x)
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        attentions = []
        for block in m.blocks:
            attentions.append(_block_attention(block, x))
            x = block(x)
        return m.forward_head(m.norm(x)), attentions


def adapt(model: nn.Module) -> nn.Module:
    """A timm ViT wrapped in TimmViT; any other model as it is."""
    return TimmViT(model) if is_timm_vit(model) else model


# --------------------------------------------------------------------------------------
# Importing timm where torchvision is missing
# --------------------------------------------------------------------------------------


class _Placeholder(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})

    def __hash__(cls):
        return id(cls)


class _EmptyModule(types.ModuleType):
    __path__: list = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


class _EmptyTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _EmptyModule(spec.name)

    def exec_module(self, module):
        pass


def import_timm_vit():
    """timm's VisionTransformer class, or None when timm is not installed.

    timm imports torchvision at load time (for its data pipeline), but its ViT uses none of
    it; PyPI's torchvision wheels pin one exact torch build each, so an environment may have
    timm without torchvision. There an empty torchvision stands in: any name timm touches
    is an inert placeholder, so if the ViT code ever did use one, it would fail loudly.
    """
    if importlib.util.find_spec("timm") is None:
        return None
    if importlib.util.find_spec("torchvision") is None and not any(
        isinstance(f, _EmptyTorchvision) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _EmptyTorchvision())
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


# --------------------------------------------------------------------------------------
# DeiT's distilled ViT (helpers.studies.distill.DistilledViT)
# --------------------------------------------------------------------------------------


def timm_distilled_kwargs(cfg: ViTConfig) -> dict:
    """timm VisionTransformerDistilled arguments for a DistilledViT's config: those of the
    plain ViT (timm_kwargs). timm's class always learns its (2 + N)-slot pos_embed, so a
    model without position embeddings has no counterpart there."""
    if cfg.pos_embed == "none":
        raise ValueError(
            "timm's VisionTransformerDistilled always has a position table: a model with "
            'pos_embed="none" has no counterpart in timm.'
        )
    if cfg.reg_tokens or cfg.global_pool != "token" or not cfg.class_token:
        raise ValueError(
            "timm's VisionTransformerDistilled has exactly a CLS and a distillation token and "
            'pools the CLS token: it needs reg_tokens=0, class_token=True, global_pool="token".'
        )
    return timm_kwargs(cfg)


def import_timm_distilled():
    """timm's VisionTransformerDistilled class (DeiT), or None when timm is not installed;
    importable without torchvision, as import_timm_vit."""
    if import_timm_vit() is None:
        return None
    from timm.models.deit import VisionTransformerDistilled

    return VisionTransformerDistilled
