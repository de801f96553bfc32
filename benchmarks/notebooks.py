"""Benchmark: wall time and peak memory of each notebook, executed top to bottom, on one
CPU core (as on Binder) and on two.

    python benchmarks/notebooks.py [--cores 1,2] [notebooks/NN_name.ipynb ...]

Each notebook runs in a fresh kernel through nbconvert (outputs are not written back),
pinned to the first N cores of this process's CPU set (sched_setaffinity), so that
`helpers.runtime.start()` gives torch N threads, as a machine with N cores would. Peak memory
is the kernel's maximum resident set size, read with psutil every 0.1 s while it runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _kernel_peak_mb(proc: subprocess.Popen, stop: threading.Event, out: list) -> None:
    """Find the kernel among nbconvert's child processes, then poll its resident set size."""
    peak, kernel = 0, None
    parent = psutil.Process(proc.pid)
    while not stop.wait(0.1):
        try:
            if kernel is None:
                kernel = next(
                    (
                        p
                        for p in parent.children(recursive=True)
                        if any("ipykernel" in arg for arg in p.cmdline())
                    ),
                    None,
                )
            if kernel is not None:
                peak = max(peak, kernel.memory_info().rss // 2**20)
        except psutil.Error:  # the kernel (or nbconvert) has just exited
            continue
    out.append(peak)


def run(nb: Path, cores: int) -> tuple[float, int, bool]:
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    stop, peak = threading.Event(), []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "nbconvert",
                "--to",
                "notebook",
                "--execute",
                "--output-dir",
                tmp,
                str(nb),
            ],
            cwd=nb.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
        watcher = threading.Thread(target=_kernel_peak_mb, args=(proc, stop, peak))
        watcher.start()
        proc.communicate()
        seconds = time.perf_counter() - t
    stop.set()
    watcher.join()
    return seconds, peak[0], proc.returncode == 0


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cores", default="1,2", help="comma-separated core counts (default 1,2)")
    p.add_argument("notebooks", nargs="*", help="default: every notebook of the series")
    a = p.parse_args(argv)
    counts = [int(c) for c in a.cores.split(",")]
    if max(counts) > len(os.sched_getaffinity(0)):
        p.error(f"--cores {a.cores}: this machine lets us use {len(os.sched_getaffinity(0))}.")
    notebooks = [Path(n).resolve() for n in a.notebooks]
    notebooks = notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    cols = " | ".join(f"{f'{c} core' + ('s' if c > 1 else ''):>9} | {'peak':>7}" for c in counts)
    print(f"{'notebook':<36} | {cols}")
    print(f"{'-' * 36}-+-" + "-+-".join(f"{'-' * 9}-+-{'-' * 7}" for _ in counts))
    totals = [0.0] * len(counts)
    for nb in notebooks:
        cells = []
        for i, c in enumerate(counts):
            seconds, mb, ok = run(nb, c)
            totals[i] += seconds
            cells.append(f"{seconds:>7.1f} s | {mb:>4} MB" + ("" if ok else " FAILED"))
        print(f"{nb.name:<36} | " + " | ".join(cells), flush=True)
    print(f"{'all notebooks':<36} | " + " | ".join(f"{t:>7.1f} s | {'':>7}" for t in totals))


if __name__ == "__main__":
    main(sys.argv[1:])
