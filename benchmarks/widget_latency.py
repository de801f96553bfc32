"""Latency and size of the attention explorer (not a test).

1. Python side, per control (~20 repeats): a new image (one forward pass + rollout + the
   view's quantized maps), and layer, head, mode, query token, colour scale (state only: the
   browser draws). Also the PNG picture drawn for renderers without scripts.
2. Browser side, in headless Chromium (Playwright, Debian's /usr/bin/chromium), on the
   kernel-free page opened from disk with the network blocked: from an input event (slider,
   menu, button, a click on the picture) to the redrawn canvas ("handler"), and to the next
   animation frame after it ("next frame", which includes waiting for the frame clock).
3. Size of the kernel-free view: per image (deflated, base64) and in total.

    .venv/bin/python benchmarks/widget_latency.py [--repeats 20] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from helpers.checkpoint import load_checkpoint
from helpers.data import CLASSES, ShapesDataset
from helpers.explorer.export import static_page
from helpers.explorer.widget import AttentionExplorer
from helpers.paths import data_file
from helpers.plots import use_style

CHROMIUM = Path("/usr/bin/chromium")


def time_changes(explorer: AttentionExplorer, changes: list[dict]) -> list[float]:
    times = []
    for kw in changes:
        t0 = time.perf_counter()
        explorer.set(**kw)
        times.append(1000 * (time.perf_counter() - t0))
    return times


def row(name: str, ts: list[float]) -> str:
    ts = sorted(ts)
    p90 = statistics.quantiles(ts, n=10)[-1] if len(ts) > 1 else ts[0]
    return f"{name:<40}{statistics.median(ts):>10.2f}{p90:>10.2f}"


# One control change in the page, timed in the page: performance.now() before the event,
# after the (synchronous) handler has redrawn the canvas, and in the next animation frame.
BROWSER_JS = """
async ([kind, i]) => {
  const root = document.querySelector('.clsx');
  const frame = () => new Promise((r) => requestAnimationFrame(() => r(performance.now())));
  await frame();
  const t0 = performance.now();
  if (kind === 'layer') {
    const s = root.querySelector('input.clsx-layer-input');
    s.value = String(i % (Number(s.max) + 1));
    s.dispatchEvent(new Event('input', {bubbles: true}));
  } else if (kind === 'head') {
    const m = root.querySelector('select.clsx-head-select');
    m.selectedIndex = i % m.options.length;
    m.dispatchEvent(new Event('change', {bubbles: true}));
  } else if (kind === 'mode') {
    root.querySelectorAll('.clsx-mode button')[i % 2].click();
  } else if (kind === 'scale') {
    root.querySelectorAll('.clsx-scale button')[i % 2].click();
  } else if (kind === 'image') {
    const b = root.querySelectorAll('.clsx-pick');
    b[i % b.length].click();
  } else if (kind === 'patch click') {
    const c = root.querySelector('canvas.clsx-canvas').getBoundingClientRect();
    const g = 8, r = i % g, k = (3 * i + 1) % g;
    root.querySelector('canvas.clsx-canvas').dispatchEvent(new MouseEvent('click', {
      bubbles: true, clientX: c.left + (k + 0.5) * c.width / g,
      clientY: c.top + (r + 0.5) * c.height / g}));
  }
  const t1 = performance.now();
  const t2 = await frame();
  return [t1 - t0, t2 - t0];
}
"""


def browser_latency(html: str, n: int) -> dict[str, tuple[list[float], list[float]]]:
    from playwright.sync_api import sync_playwright

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "explorer.html"
        page_file.write_text(static_page(html), encoding="utf-8")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.route(
                "**/*",
                lambda r: (
                    r.continue_()
                    if r.request.url.startswith(("file:", "data:", "blob:"))
                    else r.abort()
                ),
            )
            page.goto(page_file.as_uri())
            page.wait_for_selector(".clsx canvas.clsx-canvas")
            for kind in ("layer", "head", "mode", "scale", "patch click", "image"):
                page.evaluate(BROWSER_JS, [kind, 0])  # warm-up
                runs = [page.evaluate(BROWSER_JS, [kind, i + 1]) for i in range(n)]
                out[kind] = ([a for a, _ in runs], [b for _, b in runs])
            browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium part")
    args = parser.parse_args()
    n = args.repeats
    use_style()
    model, _ = load_checkpoint(data_file("vit_shapes.pt"))
    test = ShapesDataset("test")
    explorer = AttentionExplorer(model, test, classes=CLASSES, index=0)
    assert explorer.widget is not None  # time with the widget wired, as in a notebook
    L, H, g = explorer.maps.num_layers, explorer.maps.num_heads, explorer.geom.grid
    cases = {
        "image (forward + rollout + maps)": [{"index": 1 + i} for i in range(n)],
        "layer": [{"layer": i % L} for i in range(n)],
        "head (raw)": [
            {"mode": "raw", "head": [*range(H), "mean", "max"][i % (H + 2)]} for i in range(n)
        ],  # fmt: skip
        "mode (raw <-> rollout)": [{"mode": ("rollout", "raw")[i % 2]} for i in range(n)],
        "query token": [{"query": (i % g, (3 * i) % g)} for i in range(n)],
        "scale (this map <-> shared)": [{"scale": ("shared", "map")[i % 2]} for i in range(n)],
    }
    explorer.set(layer=1)  # warm-up
    print(f"AttentionExplorer latency ({n} repeats each)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("\n1. Python side: explorer.set(...) with the live widget wired")
    print(f"{'control':<40}{'median ms':>10}{'p90 ms':>10}")
    for name, changes in cases.items():
        print(row(name, time_changes(explorer, changes)))
    pngs = []
    for i in range(n):
        explorer.set(layer=i % L)
        t0 = time.perf_counter()
        explorer.png  # noqa: B018 (drawn on demand)
        pngs.append(1000 * (time.perf_counter() - t0))
    print(row("PNG picture (for pages without scripts)", pngs))

    html = explorer.static_html()
    k = len(explorer.static_indices())
    explorer.static_images = 1
    one = len(explorer.static_html().encode())
    explorer.static_images = 2
    two = len(explorer.static_html().encode())
    print(f"\n3. Kernel-free view: {len(html.encode()) / 1024:.0f} KiB for {k} test images")
    print(f"   per image {(two - one) / 1024:.0f} KiB (maps of 4 layers x (4 heads + mean) raw, "
          f"mean rollout, 65 query tokens, deflated, base64)")  # fmt: skip
    print(f"   fixed part {(one - (two - one)) / 1024:.0f} KiB (view code, CSS, PNG fallback)")

    if args.no_browser or not CHROMIUM.exists():
        print("\n2. Browser side: skipped (--no-browser, or no /usr/bin/chromium)")
        return
    print("\n2. Browser side: Chromium, the kernel-free page from disk (network blocked)")
    print(f"{'control':<40}{'handler ms':>12}{'p90':>8}{'next frame ms':>15}{'p90':>8}")
    for name, (handler, frame) in browser_latency(html, n).items():
        h, f = sorted(handler), sorted(frame)
        hp, fp = (statistics.quantiles(x, n=10)[-1] for x in (h, f))
        print(
            f"{name:<40}{statistics.median(h):>12.2f}{hp:>8.2f}"
            f"{statistics.median(f):>15.2f}{fp:>8.2f}"
        )


if __name__ == "__main__":
    main()
