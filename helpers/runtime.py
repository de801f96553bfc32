"""Runtime set-up, in one call at the top of every notebook: style, threads, seed, device.

    ns = start()          # CPU, seed 0
    ns = start(device="auto")   # a GPU when there is one (numbers then differ slightly)

The device policy of the series: `start()` chooses the device, once, and says why;
notebooks create their models on `ns.device`; every helper that takes a model runs it
where the model is, and no helper picks a device or moves a model on its own.
"""

from __future__ import annotations

import math
import numbers
import os
import platform
import random
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .paths import DATA_DIR, data_file
from .plots import use_style

DEVICES = ("cpu", "auto", "cuda", "mps")


MAX_SEED = 2**32 - 1  # numpy's seeds run from 0 to 2**32 - 1


def check_seed(seed, name: str = "seed") -> int:
    """`seed` as an int in numpy's range 0 .. 2**32 - 1, or a ValueError saying so (checked
    before any work, not as a numpy traceback after the data are made)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number, got {seed!r}.")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be between 0 and {MAX_SEED} (2**32 - 1), got {seed}.")
    return int(seed)


def seed_everything(seed: int = 0) -> None:
    """Seed Python, numpy and torch so that a rerun prints the same numbers on this machine."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def choose_device(device: str = "cpu") -> tuple[torch.device, str]:
    """The device to use, and why: "cpu" (the default), "auto" (a GPU when there is one),
    or "cuda" / "mps" (an error naming the fix when that GPU is not there)."""
    if isinstance(device, torch.device):
        device = str(device)
    kind = str(device).split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device={device!r} is not one of {DEVICES}.")
    if kind == "cpu":
        return torch.device("cpu"), (
            'the default, for the same numbers everywhere; start(device="auto") takes a GPU'
        )
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), 'asked for "auto", and a CUDA GPU is here'
        if _mps_available():
            return torch.device("mps"), 'asked for "auto", and Apple\'s MPS GPU is here'
        return torch.device("cpu"), 'asked for "auto", and no GPU is here'
    available = torch.cuda.is_available() if kind == "cuda" else _mps_available()
    if not available:
        raise RuntimeError(
            f"device={device!r} was asked for, but this machine has no {kind.upper()} GPU "
            f'(on Colab: Runtime > Change runtime type > GPU); use start(device="auto") to '
            f"take a GPU only when there is one, or the default, the CPU."
        )
    return torch.device(device), "asked for"


def model_device(model) -> torch.device:
    """Where the model's parameters are: the device every helper runs it on."""
    return next(model.parameters()).device


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may really use: its affinity, capped by a cgroup CPU quota.

    On Binder or in a container, os.cpu_count() reports the host's cores (often 16 or more)
    while the quota allows 1; torch would then start one thread per host core and crawl.
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path(cpu_max).read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n or 1)


def cpu_kind() -> str:
    """This CPU as far as torch's arithmetic is concerned: the architecture, the vector
    instructions torch's kernels use (AVX2, AVX512, ...) and the processor's name. Two CPUs
    of another kind can sum in another order, so the same run differs in the last digits."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return f"{platform.machine()}, {capability}, {name}"


def provenance(prog: str, argv=None) -> dict:
    """What a results file records about how it was made: the command as typed (`prog` is
    e.g. "helpers.train"; argv None: this process's arguments), the torch version, its thread
    count and the kind of CPU (training is bit-identical only for the same version, thread
    count and kind of CPU), the machine and the Python version."""
    args = sys.argv[1:] if argv is None else list(argv)
    return {
        "command": " ".join(["python -m", prog, *args]),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "cpu": cpu_kind(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
    }


def same_numerics(record: dict, device=None) -> tuple[bool, str]:
    """Should a rerun here give `record`'s numbers to the last digit? (True, "") when the
    torch version, the device (the CPU) and the kind of CPU are the record's (the caller
    sets the record's thread count); else (False, why not), for a notebook to print beside
    a rerun that lands near the record but not on it."""
    why = []
    if device is not None and torch.device(device).type != "cpu":
        why.append(f"this runs on {torch.device(device).type}, the record on the CPU")
    if record.get("torch") != str(torch.__version__):
        why.append(f"torch {torch.__version__} here, {record.get('torch')} in the record")
    here = cpu_kind()
    if "cpu" not in record:
        why.append(f"the record does not say which kind of CPU made it (this one: {here})")
    elif record["cpu"] != here:
        why.append(f"this CPU is {here}, the record's was {record['cpu']}")
    return not why, "; ".join(why)


@contextmanager
def threads(n: int):
    """Run the block with torch on `n` threads, then give back the threads it had: a live
    rerun of a record at the record's thread count, so that its sums run in the record's
    order (and a rerun recorded on one thread does not slow down on a busy machine)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a whole number >= 1 (a record's 'threads'), got {n!r}.")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def start(seed: int = 0, device: str = "cpu") -> SimpleNamespace:
    """Apply the plot style, fit torch's threads to the CPUs we may use, seed everything and
    choose the device; prints one line that says what was chosen and why.

    Returns a namespace: device, seed, data (the data folder), checkpoint (the shipped model).
    """
    use_style()
    threads = min(torch.get_num_threads(), available_cpus())
    torch.set_num_threads(threads)
    seed_everything(seed)
    dev, why = choose_device(device)
    print(
        f"Python {platform.python_version()} | torch {torch.__version__} | {threads} CPU "
        f"thread{'s' if threads > 1 else ''} | seed {seed} | device: {dev} ({why})"
    )
    return SimpleNamespace(
        device=dev, seed=seed, data=DATA_DIR, checkpoint=data_file("vit_shapes.pt")
    )


class Diverged(ValueError):
    """Training reached a loss that is not a finite number: the run is worthless, so the
    command that started it stops and writes nothing."""


def check_loss(loss, step: int, lr: float | None = None) -> float:
    """The loss of one optimizer step as a float; raise `Diverged`, naming the likely cause,
    when it is NaN or infinite (called before the step is taken, so no weight is spoiled)."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        rate = f" (learning rate {lr:g})" if lr is not None else ""
        raise Diverged(
            f"training diverged: the loss is {value} at step {step}{rate}. The likely cause "
            "is a learning rate far too high (the series trains at about 1e-3; check for a "
            "typo such as 1e3) or a bad setting; nothing was saved."
        )
    return value


def finite_number(value, name: str) -> float:
    """`value` as a finite float (an int, a float, a numpy number), or a ValueError naming
    `name`: the check every config's rates, temperatures and shares go through."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def require_finite(x, name: str = "input", fix: str = "") -> torch.Tensor:
    """`x` as a tensor; a ValueError when it holds NaN or infinity, which every score would
    otherwise count silently (a NaN similarity is a "hit", a NaN feature a wrong vote)."""
    t = torch.as_tensor(x)
    if t.is_floating_point() or t.is_complex():
        bad = (~torch.isfinite(t)).sum().item()
        if bad:
            fix = fix or "the model that made it probably diverged: retrain it at a lower rate"
            plural = "s" if bad != 1 else ""
            raise ValueError(
                f"{name} holds {bad} NaN or infinite value{plural} (of {t.numel()}): {fix}."
            )
    return t
