"""Benchmark: wall time and peak memory of each notebook, executed top to bottom.

    python benchmarks/notebooks.py [notebooks/NN_name.ipynb ...]

Each notebook runs in a fresh kernel through nbconvert (outputs are not written back).
Peak memory is the kernel's maximum resident set size, read with psutil every 0.1 s while it
runs.
"""

from __future__ import annotations

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


def run(nb: Path) -> tuple[float, int, bool]:
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
        )
        watcher = threading.Thread(target=_kernel_peak_mb, args=(proc, stop, peak))
        watcher.start()
        proc.communicate()
        seconds = time.perf_counter() - t
    stop.set()
    watcher.join()
    return seconds, peak[0], proc.returncode == 0


def main(paths: list[str]) -> None:
    notebooks = [Path(p).resolve() for p in paths] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    print(f"{'notebook':<36} | {'wall time':>9} | {'peak memory':>11} | ok")
    print(f"{'-' * 36}-+-{'-' * 9}-+-{'-' * 11}-+---")
    for nb in notebooks:
        seconds, mb, ok = run(nb)
        print(
            f"{nb.name:<36} | {seconds:>7.1f} s | {mb:>8} MB | {'yes' if ok else 'FAILED'}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
