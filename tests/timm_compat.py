"""Import timm's VisionTransformer without torchvision.

timm's package imports torchvision at load time (for its data pipeline and one norm layer),
but its VisionTransformer uses none of it. PyPI's torchvision wheels pin one exact torch
each, and the CPU torch of the test environment has no matching one, so the tests install
timm with --no-deps and stand in an empty torchvision package here. Any torchvision name
timm touches resolves to an inert placeholder class, so if the ViT code ever did use one,
the comparison would fail loudly rather than pass.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types


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


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _EmptyModule(spec.name)

    def exec_module(self, module):
        pass


def import_timm_vit():
    """timm's VisionTransformer class, or None when timm is not installed."""
    if importlib.util.find_spec("timm") is None:
        return None
    if importlib.util.find_spec("torchvision") is None and not any(
        isinstance(f, _Finder) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _Finder())
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


def timm_kwargs(cfg) -> dict:
    """The timm VisionTransformer arguments for a helpers ViTConfig."""
    return dict(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_channels,
        num_classes=cfg.num_classes,
        embed_dim=cfg.dim,
        depth=cfg.depth,
        num_heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        class_token=cfg.class_token,
        reg_tokens=cfg.reg_tokens,
        global_pool={"cls": "token", "gap": "avg", "map": "map"}[cfg.pool],
        pos_embed="none" if cfg.pos_embed == "none" else "learn",
    )
