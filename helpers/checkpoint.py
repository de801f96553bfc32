"""Checkpoints: weights with their config inside, written atomically, loaded safely.

The file is a plain `torch.save` dict of tensors, numbers and strings, read back with
`torch.load(weights_only=True)`, which refuses to run code hidden in a file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch

from .model import LEGACY_NAMES, LEGACY_VALUES, VisionTransformer, ViTConfig

FORMAT = "inside-the-cls-token/vit"
VERSION = 2  # 1: the config under the series' first names; 2: timm's names
TRAINING_ONLY = ("drop_rate", "proj_drop_rate", "attn_drop_rate", "cls_init")


def atomic_write(path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and a rename, so a crash
    mid-write never leaves a half-written file under the final name (the old one survives).
    Temporary files that a killed earlier write left behind are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{prefix}*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 60:  # not a write in progress
                stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; use normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def output_problem(path, suffix: str, force: bool = False) -> str | None:
    """Why a command must not write its result to `path`, or None: the wrong suffix, a file
    that exists (without `force`), or a folder that does not exist. Checked before any work,
    so a bad path costs nothing and destroys nothing."""
    path = Path(path)
    if path.suffix != suffix:
        extra = " (the record is written next to it as .json)" if suffix == ".pt" else ""
        return f"--out {path} must end in {suffix}{extra}."
    if path.exists() and not force:
        return f"{path} exists: pass --force to replace it, or choose another --out."
    if path.is_dir() or not path.parent.is_dir():
        return f"cannot write {path}: its folder {path.parent} does not exist (create it first)."
    return None


def command_parser(module: str, description: str, out_help: str, default: str | None = None):
    """The argument parser of a command of the series (`python -m helpers.<module>`), with
    the options every one of them has: --out (required when it has no default), --force and
    --threads. Add the command's own options, then call `parse_command`."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    p.add_argument("--out", default=default, required=default is None, help=out_help)
    p.add_argument("--force", action="store_true", help="replace an existing file at --out")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p


def parse_command(p: argparse.ArgumentParser, argv, suffix: str):
    """Parse argv with a `command_parser`; refuse a bad --out (see output_problem) or a
    negative --threads with the parser's error (usage, the problem, exit status 2); give torch
    the threads asked for. Returns (the arguments, --out as a Path)."""
    a = p.parse_args(argv)
    out = Path(a.out)
    if problem := output_problem(out, suffix, a.force):
        p.error(problem)
    if a.threads < 0:
        p.error(f"--threads must be >= 0, got {a.threads}.")
    if a.threads:
        torch.set_num_threads(a.threads)
    return a, out


def save_payload(path, payload: dict) -> Path:
    """torch.save a dict of tensors and plain values to `path`, atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write(path, buf.getvalue())


def load_payload(path, what: str, rebuild: str):
    """torch.load(weights_only=True) a file of the series, with errors that name the problem
    and the fix: `what` names the kind of file ("checkpoint"), `rebuild` how to make it again
    (a command, or a function to save it with)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}: check the path, or {rebuild}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # no code in it: junk or a truncated file
            raise ValueError(
                f"{path} is not a readable {what} of this project: it may be truncated or "
                f"another kind of file; {rebuild}."
            ) from None
        raise ValueError(
            f"{path} holds objects other than tensors, numbers and strings, and was refused "
            f"for safety (loading it could run code hidden in the file). Load only files "
            f"this project wrote."
        ) from None
    except Exception as e:  # truncated zip, not a torch file at all, ...
        raise ValueError(
            f"{path} is not a readable {what} of this project ({type(e).__name__}): it may "
            f"be truncated or another kind of file; {rebuild}."
        ) from None


def save_model(model, path, fmt: str, config: dict, meta: dict | None = None, **extra) -> Path:
    """Write a model of the series (its file format's name, config, weights on the CPU, meta
    and any `extra` plain values) to `path` atomically; the loaders check `fmt`."""
    payload = {
        "format": fmt,
        **extra,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": json.loads(json.dumps(meta or {})),  # plain types only: safe to load
    }
    return save_payload(path, payload)


def save_checkpoint(model: VisionTransformer, path, meta: dict | None = None) -> Path:
    """Write model weights + config (+ meta) to `path`, atomically (see atomic_write)."""
    return save_model(model, path, FORMAT, model.cfg.to_dict(), meta, version=VERSION)


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict, checked: a file of this project, a version this copy reads,
    a valid config and a dict of tensors. Clear errors for a missing or foreign file."""
    path = Path(path)
    payload = load_payload(
        path,
        "checkpoint",
        f"rebuild it with `python -m helpers.train --out {path}` (or save the model again "
        f"with helpers.checkpoint.save_checkpoint)",
    )
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
    kinds = {"config": dict, "state_dict": dict, "meta": dict}
    for key, kind in kinds.items():
        if not isinstance(payload.get(key), kind):
            raise ValueError(f"{path} is damaged: its {key!r} is missing or not a {kind.__name__}.")
    if not all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        raise ValueError(f"{path} is damaged: its state_dict holds something other than tensors.")
    if version == 1:
        payload["config"] = upgrade_config(payload["config"])
    unknown = set(payload["config"]) - {f.name for f in fields(ViTConfig)}
    if unknown:
        raise ValueError(
            f"{path} has config options this copy of the series does not know: "
            f"{sorted(unknown)}; update the series, or save the model again."
        )
    try:
        ViTConfig(**payload["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} holds an invalid config: {e}") from None
    return payload


def upgrade_config(config: dict) -> dict:
    """A config saved under the series' first names (version 1) under timm's names."""
    new = {LEGACY_NAMES.get(k, k): v for k, v in config.items()}
    for key, values in LEGACY_VALUES.items():
        if key in new:
            new[key] = values.get(new[key], new[key])
    return new


def check_state_dict(expected: dict, got: dict, path) -> None:
    """The tensors of `got` must be exactly those of `expected`: names, shapes, dtypes."""
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    wrong = [
        f"{k} {tuple(got[k].shape)} {got[k].dtype} (expected {tuple(v.shape)} {v.dtype})"
        for k, v in expected.items()
        if k in got and (got[k].shape != v.shape or got[k].dtype != v.dtype)
    ]
    problems = [
        f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
        for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong))
        if items
    ]
    if problems:
        raise ValueError(
            f"the weights in {path} do not fit the model its config describes ("
            + "; ".join(problems)
            + "): the file is damaged or was edited; save the model again."
        )


def load_checkpoint(path, device: torch.device | str = "cpu") -> tuple[VisionTransformer, dict]:
    """Build the model described by the checkpoint on `device`, load its weights; returns
    (model in eval mode, meta).

    The model is first built on the "meta" device (shapes only, no memory, no random draws),
    so a file is checked against its own config before anything is allocated.
    """
    payload = read_checkpoint(path)
    with torch.device("meta"):
        model = VisionTransformer(ViTConfig(**payload["config"]))
    check_state_dict(model.state_dict(), payload["state_dict"], path)
    model.load_state_dict(payload["state_dict"], assign=True)
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
    check_state_dict(model.state_dict(), payload["state_dict"], path)
    model.load_state_dict(payload["state_dict"])
    return payload["meta"]


SNAPSHOTS_FORMAT = "inside-the-cls-token/vit-snapshots"


def save_snapshots(cfg: ViTConfig, states: dict, path, meta: dict | None = None) -> Path:
    """Write the weights of one model at several training steps to one file, atomically.

    states: {step: state_dict}, all for a model built from `cfg` (as train()'s callback sees
    it); read back with `load_snapshots`.
    """
    if not states:
        raise ValueError("no snapshots to save: pass {step: state_dict} with at least one step.")
    payload = {
        "format": SNAPSHOTS_FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "state_dicts": {
            str(int(step)): {k: v.detach().cpu() for k, v in sd.items()}
            for step, sd in sorted(states.items())
        },
        "meta": json.loads(json.dumps(meta or {})),
    }
    return save_payload(path, payload)


def load_snapshots(path, device: torch.device | str = "cpu") -> tuple[dict, dict]:
    """({step: model in eval mode}, meta) from a file written by `save_snapshots` (the command
    `python -m helpers.train --snapshots 50,150,450 --out FILE` makes one)."""
    path = Path(path)
    payload = load_payload(
        path,
        "snapshot file",
        f"rebuild it with `python -m helpers.train --snapshots 40,120,400 --out {path}`",
    )
    if not isinstance(payload, dict) or payload.get("format") != SNAPSHOTS_FORMAT:
        hint = (
            " (a single checkpoint: use load_checkpoint)"
            if isinstance(payload, dict) and (payload.get("format") == FORMAT)
            else ""
        )
        raise ValueError(f"{path} is not a snapshot file of this project{hint}.")
    cfg = ViTConfig(**payload["config"])
    models = {}
    for step, state in payload["state_dicts"].items():
        with torch.device("meta"):
            model = VisionTransformer(cfg)
        check_state_dict(model.state_dict(), state, path)
        model.load_state_dict(state, assign=True)
        models[int(step)] = model.to(device).eval()
    return models, payload["meta"]
