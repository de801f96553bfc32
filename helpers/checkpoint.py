"""Checkpoints: weights with their config inside, written atomically, loaded safely.

The file is a plain `torch.save` dict of tensors, numbers and strings, read back with
`torch.load(weights_only=True)`, which refuses to run code hidden in a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from .model import LEGACY_NAMES, LEGACY_VALUES, VisionTransformer, ViTConfig

FORMAT = "inside-the-cls-token/vit"
VERSION = 2  # 1: the config under the series' first names; 2: timm's names
TRAINING_ONLY = ("drop_rate", "proj_drop_rate", "attn_drop_rate", "cls_init")


def save_checkpoint(model: VisionTransformer, path, meta: dict | None = None) -> Path:
    """Write model weights + config (+ meta) to `path` via a temporary file and a rename,
    so a crash mid-write never leaves a half-written checkpoint under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": json.loads(json.dumps(meta or {})),  # plain types only: safe to load
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; use normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict, with clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: check the path, or rebuild it with "
            f"`python -m helpers.train --out {path}`."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise ValueError(
            f"{path} is not a readable checkpoint of this project ({type(e).__name__}): "
            f"it may be truncated or another kind of file; save it again with "
            f"helpers.checkpoint.save_checkpoint."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a torch file but not a checkpoint of this project (no "
            f"'format': '{FORMAT}'): save models with helpers.checkpoint.save_checkpoint."
        )
    version = payload.get("version")
    if version not in (1, VERSION):
        raise ValueError(
            f"{path} has checkpoint format version {version!r}; this copy of the series reads "
            f"versions 1 to {VERSION}: update it (git pull, or pip install the newer release)."
        )
    if version == 1:
        payload["config"] = upgrade_config(payload["config"])
    return payload


def upgrade_config(config: dict) -> dict:
    """A config saved under the series' first names (version 1) under timm's names."""
    new = {LEGACY_NAMES.get(k, k): v for k, v in config.items()}
    for key, values in LEGACY_VALUES.items():
        if key in new:
            new[key] = values.get(new[key], new[key])
    return new


def load_checkpoint(path, device: torch.device | str = "cpu") -> tuple[VisionTransformer, dict]:
    """Build the model described by the checkpoint on `device`, load its weights; returns
    (model in eval mode, meta)."""
    payload = read_checkpoint(path)
    model = VisionTransformer(ViTConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload["meta"]


def load_weights(model: VisionTransformer, path) -> dict:
    """Load a checkpoint into an existing model; a config mismatch is named, field by field."""
    payload = read_checkpoint(path)
    mine, theirs = model.cfg.to_dict(), payload["config"]
    diff = {
        k: (theirs.get(k), mine.get(k))
        for k in set(mine) | set(theirs)
        if mine.get(k) != theirs.get(k) and k not in TRAINING_ONLY
    }
    if diff:
        detail = ", ".join(
            f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in sorted(diff.items())
        )
        raise ValueError(
            f"{path} was saved from a model with another config ({detail}): build the model "
            f"with helpers.checkpoint.load_checkpoint({str(path)!r}) instead."
        )
    model.load_state_dict(payload["state_dict"])
    return payload["meta"]
