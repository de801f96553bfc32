"""Python-side latency of the attention explorer, per control (not a test).

Builds the explorer on the shipped model and the test set, then times each kind of change
(~20 repeats): a new image (one forward pass + rollout + redraw), layer, head, mode, and
query token (redraw only). Prints the median and 90th percentile in milliseconds.

    .venv/bin/python benchmarks/widget_latency.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from helpers.checkpoint import load_checkpoint
from helpers.data import CLASSES, ShapesDataset
from helpers.paths import data_file
from helpers.plots import use_style
from helpers.widgets import AttentionExplorer


def time_changes(explorer: AttentionExplorer, changes: list[dict]) -> list[float]:
    times = []
    for kw in changes:
        t0 = time.perf_counter()
        explorer.set(**kw)
        times.append(1000 * (time.perf_counter() - t0))
    return times


def redraw_strategies(explorer: AttentionExplorer, n: int) -> dict[str, float]:
    """Median ms of a layer + query change, drawn three ways: the whole figure each time,
    blitting the static picture, and blitting with the cache of rendered colorbars."""
    cls = type(explorer)
    blit, colorbar = cls._draw, cls._draw_colorbar

    def whole_figure(self):
        self.canvas.draw()

    def uncached_colorbar(self):
        self._cbar_cache = {}
        colorbar(self)

    ways = {
        "whole figure (canvas.draw)": (whole_figure, colorbar),
        "blit, colorbar drawn each time": (blit, uncached_colorbar),
        "blit + colorbar cache (used)": (blit, colorbar),
    }
    changes = [{"layer": i % 4, "query": (i % 8, (3 * i) % 8)} for i in range(n)]
    out = {}
    try:
        for name, (draw, cbar) in ways.items():
            cls._draw, cls._draw_colorbar = draw, cbar
            explorer.set(layer=0)
            out[name] = statistics.median(time_changes(explorer, changes))
    finally:
        cls._draw, cls._draw_colorbar = blit, colorbar
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    n = parser.parse_args().repeats
    use_style()
    model, _ = load_checkpoint(data_file("vit_shapes.pt"))
    test = ShapesDataset("test")
    explorer = AttentionExplorer(model, test, classes=CLASSES, index=0)
    assert explorer.widget is not None  # time with the widgets wired, as in a notebook
    L, H, g = explorer.maps.num_layers, explorer.maps.num_heads, explorer.geom.grid
    cases = {
        "image (forward + rollout + redraw)": [{"index": 1 + i} for i in range(n)],
        "layer": [{"layer": i % L} for i in range(n)],
        "head (raw)": [
            {"mode": "raw", "head": [*range(H), "mean", "max"][i % (H + 2)]} for i in range(n)
        ],  # fmt: skip
        "mode (raw <-> rollout)": [{"mode": ("rollout", "raw")[i % 2]} for i in range(n)],
        "query token": [{"query": (i % g, (3 * i) % g)} for i in range(n)],
    }
    explorer.set(layer=1)  # warm-up
    print(f"AttentionExplorer redraw latency, Python side ({n} repeats each)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'control':<38}{'median ms':>10}{'p90 ms':>10}")
    for name, changes in cases.items():
        ts = sorted(time_changes(explorer, changes))
        p90 = statistics.quantiles(ts, n=10)[-1] if len(ts) > 1 else ts[0]
        print(f"{name:<38}{statistics.median(ts):>10.1f}{p90:>10.1f}")
    print(f"\nRedraw strategy, layer + query change ({n} repeats each)")
    print(f"{'strategy':<38}{'median ms':>10}")
    for name, ms in redraw_strategies(explorer, n).items():
        print(f"{name:<38}{ms:>10.1f}")


if __name__ == "__main__":
    main()
