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
from .runtime import MAX_SEED, Diverged

FORMAT = "inside-the-cls-token/vit"
VERSION = 2  # 1: the config under the series' first names; 2: timm's names
MAX_THREADS = 256  # more torch threads than any machine the series runs on has cores
TRAINING_ONLY = ("drop_rate", "proj_drop_rate", "attn_drop_rate", "cls_init")


def _clear_stale(path: Path) -> None:
    """Remove temporary files that a killed earlier write of `path` left behind."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 60:  # not a write in progress
                stale.unlink()


def atomic_write_files(files: dict) -> list[Path]:
    """Write {path: bytes} so that a failure leaves every old file as it was: each file goes
    to a temporary file in its own folder first (a full disk or a crash stops here, before any
    final name is touched), and only when all are written are they renamed into place."""
    done = []
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            _clear_stale(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            done.append((path, tmp))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; use normal ones
    except BaseException:
        for _, tmp in done:
            Path(tmp).unlink(missing_ok=True)
        raise
    # Renames need no space. Should one fail all the same, the files renamed before it get
    # their old versions back (kept meanwhile as hard links), so the set is all old or all new.
    backups, renamed = {}, []
    try:
        for path, _ in done:
            if len(done) > 1 and path.exists():
                backup = path.parent / f".{path.name}.{os.getpid()}.bak"
                with contextlib.suppress(OSError):
                    backup.unlink(missing_ok=True)
                    os.link(path, backup)
                    backups[path] = backup
        for path, tmp in done:
            os.replace(tmp, path)
            renamed.append(path)
    except BaseException:
        for path in renamed:
            with contextlib.suppress(OSError):
                if path in backups:
                    os.replace(backups.pop(path), path)
                else:
                    path.unlink()
        for _, tmp in done:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)
    return [path for path, _ in done]


def atomic_write(path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and a rename, so a crash
    mid-write never leaves a half-written file under the final name (the old one survives)."""
    return atomic_write_files({path: data})[0]


def record_bytes(meta: dict) -> bytes:
    """A command's .json record, as written beside its .pt file."""
    return (json.dumps(meta, indent=2) + "\n").encode()


def output_problem(path, suffix: str, force: bool = False) -> str | None:
    """Why a command must not write its result to `path`, or None: the wrong suffix, a file
    that exists (without `force`), or a folder that does not exist. Checked before any work,
    so a bad path costs nothing and destroys nothing."""
    path = Path(path)
    if path.is_dir():
        return f"--out {path} is a folder: give a file name inside it, e.g. {path / 'run'}{suffix}."
    if path.suffix != suffix:
        extra = " (the record is written next to it as .json)" if suffix == ".pt" else ""
        return f"--out {path} must end in {suffix}{extra}."
    record = path.with_suffix(".json") if suffix == ".pt" else None
    for existing in (path, record):
        if existing is not None and existing.exists() and not force:
            return f"{existing} exists: pass --force to replace it, or choose another --out."
    if not path.parent.is_dir():
        return f"cannot write {path}: its folder {path.parent} does not exist (create it first)."
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"cannot write {path}: its folder {path.parent} is not writable (choose another)."
    return None


class OutputBusy(ValueError):
    """Another run is writing to the same --out."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def claim_output(path, parser: argparse.ArgumentParser | None = None):
    """Hold --out for the length of a run: a lock file beside it (`.NAME.lock`, with this
    process's id) made with O_EXCL, so a second run given the same --out is refused at its
    start instead of silently replacing the first one's result. A lock left by a killed run
    (its process is gone) is taken over. Inside, a `Diverged` training run ends the command
    with its message (exit status 1) instead of a traceback; nothing is written."""
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"

    def refuse(message, status=2):
        if parser is None:
            raise OutputBusy(message)
        parser.exit(status, f"{parser.prog}: error: {message}\n")

    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                refuse(
                    f"another run (process {pid}) is writing {path}: wait for it to finish, "
                    f"or choose another --out (if no run is, remove {lock})."
                )
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # left by a killed run (or by this process): take it over
        except OSError as e:
            refuse(f"cannot write {path}: {e.strerror} (choose another --out).")
    else:
        refuse(f"cannot claim {path}: remove {lock} and run again.")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield path
    except Diverged as e:
        if parser is None:
            raise
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def command_parser(module: str, description: str, out_help: str, default: str | None = None):
    """The argument parser of a command of the series (`python -m helpers.<module>`), with
    the options every one of them has: --out (required when it has no default), --force and
    --threads. Add the command's own options, then call `parse_command`."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    p.add_argument("--out", default=default, required=default is None, help=out_help)
    p.add_argument("--force", action="store_true", help="replace an existing file at --out")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p


def comma_list(p: argparse.ArgumentParser, value: str, flag: str, choices=None, convert=str):
    """`--flag a,b,c` as a list, each item once (and one of `choices` where given), each
    converted by `convert` (e.g. int for seeds); otherwise the parser's error, with the fix."""
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    try:
        items = [convert(v) for v in items]
    except ValueError:
        p.error(f"{flag} takes values separated by commas, e.g. {flag} 1,2; got {value!r}.")
    unknown = [v for v in items if choices is not None and v not in choices]
    if unknown or not items:
        p.error(
            f"{flag} {value!r}: unknown {', '.join(map(repr, unknown)) or '(none given)'}"
            + (f"; choose from {', '.join(map(repr, choices))}." if choices else ".")
        )
    if twice := sorted({v for v in items if items.count(v) > 1}, key=str):
        p.error(
            f"{flag} names {', '.join(map(str, twice))} more than once: give each once "
            f"(e.g. {flag} {','.join(map(str, dict.fromkeys(items)))})."
        )
    return items


def parse_command(p: argparse.ArgumentParser, argv, suffix: str):
    """Parse argv with a `command_parser`; refuse a bad --out (see output_problem) or a
    negative --threads with the parser's error (usage, the problem, exit status 2); give torch
    the threads asked for. Returns (the arguments, --out as a Path)."""
    a = p.parse_args(argv)
    out = Path(a.out)
    if problem := output_problem(out, suffix, a.force):
        p.error(problem)
    if not 0 <= a.threads <= MAX_THREADS:
        p.error(
            f"--threads must be between 0 (torch's default) and {MAX_THREADS}, got {a.threads}."
        )
    # Every command's seeds (--seed N, or --seeds as a list of seeds), checked before any work.
    seeds = [("--seed", getattr(a, "seed", None))]
    if isinstance(getattr(a, "seeds", None), list):
        seeds += [("--seeds", s) for s in a.seeds]
    for name, seed in seeds:
        if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
            p.error(f"{name} must be between 0 and {MAX_SEED} (2**32 - 1), got {seed}.")
    if a.threads:
        torch.set_num_threads(a.threads)
    return a, out


def save_payload(path, payload: dict, record: dict | None = None) -> Path:
    """torch.save a dict of tensors and plain values to `path`, atomically; with `record`,
    write it as the .json beside it in the same atomic write (both files new, or both old)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    files = {Path(path): buf.getvalue()}
    if record is not None:
        files[Path(path).with_suffix(".json")] = record_bytes(record)
    return atomic_write_files(files)[0]


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


def save_model(
    model, path, fmt: str, config: dict, meta: dict | None = None, record=False, **extra
) -> Path:
    """Write a model of the series (its file format's name, config, weights on the CPU, meta
    and any `extra` plain values) to `path` atomically; the loaders check `fmt`. Weights that
    are not finite are refused (a diverged run is not a result). record=True: write `meta` as
    the .json record beside it, in the same atomic write."""
    check_finite_weights(model.state_dict(), "the model to save", "nothing was written")
    payload = {
        "format": fmt,
        **extra,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": json.loads(json.dumps(meta or {})),  # plain types only: safe to load
    }
    return save_payload(path, payload, (meta or {}) if record else None)


def save_checkpoint(
    model: VisionTransformer, path, meta: dict | None = None, record: bool = False
) -> Path:
    """Write model weights + config (+ meta) to `path`, atomically (see atomic_write_files);
    record=True also writes meta as the .json record beside it, in the same write."""
    return save_model(model, path, FORMAT, model.cfg.to_dict(), meta, record, version=VERSION)


# Every model file of the series, by its "format": the versions this copy reads and the
# function that loads it (named when a file is given to the wrong loader).
FORMATS = {
    FORMAT: ((1, VERSION), "helpers.checkpoint.load_checkpoint", "ViT checkpoint"),
    "inside-the-cls-token/vit-snapshots": (
        (1, VERSION),
        "helpers.checkpoint.load_snapshots",
        "file of ViT snapshots",
    ),
    "inside-the-cls-token/cnn": ((1,), "helpers.studies.distill.load_cnn", "CNN teacher"),
    "inside-the-cls-token/clip-lite": ((1,), "helpers.studies.clip.load_clip", "CLIP-lite model"),
}


def read_model_file(path, fmt: str, what: str, rebuild: str, config_fields=None) -> dict:
    """The raw dict of a model file of the series, checked before anything is built: a file
    of this project, of format `fmt` (another of the series' formats names its loader), a
    version this copy reads (files from before versions were recorded count as 1), a dict
    config with only the fields in `config_fields` (when given), and a dict of finite tensors.
    `what` names the kind of file in errors, `rebuild` says how to make it again."""
    path = Path(path)
    payload = load_payload(path, what, rebuild)
    got = payload.get("format") if isinstance(payload, dict) else None
    if got != fmt:
        if got in FORMATS:
            _, loader, kind = FORMATS[got]
            raise ValueError(
                f"{path} is not a {what}: it is a {kind} of this project; "
                f"use {loader}({str(path)!r})."
            )
        raise ValueError(
            f"{path} is a torch file but not a {what} of this project (no 'format': "
            f"'{fmt}'): {rebuild}."
        )
    versions = FORMATS[fmt][0]
    version = payload.get("version", 1)
    if version not in versions:
        raise ValueError(
            f"{path} has {what} format version {version!r}; this copy of the series reads "
            f"versions {versions[0]} to {versions[-1]}: update it (git pull, or pip install "
            f"the newer release)."
        )
    weights = "state_dicts" if "state_dicts" in payload else "state_dict"
    kinds = {"config": dict, weights: dict, "meta": dict}
    for key, kind in kinds.items():
        if not isinstance(payload.get(key), kind):
            raise ValueError(f"{path} is damaged: its {key!r} is missing or not a {kind.__name__}.")
    states = payload[weights].values() if weights == "state_dicts" else [payload[weights]]
    for sd in states:
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ValueError(f"{path} is damaged: its weights hold something other than tensors.")
        check_finite_weights(sd, str(path), "the run that saved it diverged: retrain it")
    if config_fields is not None:
        if version == 1 and fmt in (FORMAT, "inside-the-cls-token/vit-snapshots"):
            payload["config"] = upgrade_config(payload["config"])
        unknown = set(payload["config"]) - set(config_fields)
        if unknown:
            raise ValueError(
                f"{path} has config options this copy of the series does not know: "
                f"{sorted(unknown)}; update the series, or save the model again."
            )
    return payload


def check_finite_weights(state_dict: dict, where: str, fix: str) -> None:
    """Refuse weights holding NaN or infinity: a model that diverged is not a result."""
    bad = [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        more = " ..." if len(bad) > 3 else ""
        raise ValueError(
            f"{where} holds NaN or infinite weights ({', '.join(bad[:3])}{more}): {fix}."
        )


def build_model(payload: dict, build, path, device="cpu"):
    """The model `build(config)` makes, with the payload's weights, on `device`, in eval mode.
    It is built on the "meta" device first (shapes only: no memory, no random draws), so a
    file that asks for a huge model, or whose weights do not fit its config, costs nothing."""
    try:
        with torch.device("meta"):
            model = build(payload["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} holds an invalid config: {e}") from None
    check_state_dict(model.state_dict(), payload["state_dict"], path)
    model.load_state_dict(payload["state_dict"], assign=True)
    return model.to(device).eval()


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict, checked: a file of this project, a version this copy reads,
    a valid config and a dict of tensors. Clear errors for a missing or foreign file."""
    path = Path(path)
    payload = read_model_file(
        path,
        FORMAT,
        "checkpoint",
        f"rebuild it with `python -m helpers.train --out {path}` (or save the model again "
        f"with helpers.checkpoint.save_checkpoint)",
        [f.name for f in fields(ViTConfig)],
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
    if "dist_token" in payload["state_dict"]:
        raise ValueError(
            f"{path} holds a ViT with a distillation token (DeiT): load it with "
            f"helpers.studies.distill.load_distilled({str(path)!r})."
        )
    model = build_model(payload, lambda c: VisionTransformer(ViTConfig(**c)), path, device)
    return model, payload["meta"]


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


def save_snapshots(
    cfg: ViTConfig, states: dict, path, meta: dict | None = None, record: bool = False
) -> Path:
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
    for step, sd in payload["state_dicts"].items():
        check_finite_weights(sd, f"the snapshot at step {step}", "nothing was written")
    return save_payload(path, payload, (meta or {}) if record else None)


def load_snapshots(path, device: torch.device | str = "cpu") -> tuple[dict, dict]:
    """({step: model in eval mode}, meta) from a file written by `save_snapshots` (the command
    `python -m helpers.train --snapshots 50,150,450 --out FILE` makes one)."""
    path = Path(path)
    payload = read_model_file(
        path,
        SNAPSHOTS_FORMAT,
        "snapshot file",
        f"rebuild it with `python -m helpers.train --snapshots 40,120,400 --out {path}`",
        [f.name for f in fields(ViTConfig)],
    )
    cfg = ViTConfig(**payload["config"])
    models = {}
    for step, state in payload["state_dicts"].items():
        one = {"config": payload["config"], "state_dict": state}
        models[int(step)] = build_model(one, lambda c: VisionTransformer(cfg), path, device)
    return models, payload["meta"]
