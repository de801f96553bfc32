"""Benchmark: wall time and peak memory of each notebook, executed top to bottom.

    python benchmarks/notebooks.py [notebooks/NN_name.ipynb ...]

Each notebook runs in a fresh kernel through nbconvert (outputs are not written back).
Peak memory is the kernel's maximum resident set size, read from /proc while it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _kernel_pids() -> list[str]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def _kernel_peak_mb(stop: threading.Event, out: list) -> None:
    """Find the kernel process once, then poll its VmHWM (peak resident set size)."""
    peak, pids = 0, []
    while not stop.wait(0.2):
        pids = pids or _kernel_pids()
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) // 1024)
            except OSError:
                continue
    out.append(peak)


def run(nb: Path) -> tuple[float, int, bool]:
    stop, peak = threading.Event(), []
    watcher = threading.Thread(target=_kernel_peak_mb, args=(stop, peak))
    watcher.start()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.run(
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
            capture_output=True,
            text=True,
        )
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
