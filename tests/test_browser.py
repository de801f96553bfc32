"""The attention explorer in a real browser: JupyterLab + headless Chromium (Playwright).

Opens the attention notebook, runs all cells from the Run menu, waits for the explorer,
moves the layer slider, clicks a patch to make it the query token, and checks that the
heatmap changed each time. Screenshots go to tests/artifacts/ (gitignored).

Needs Debian's Chromium at /usr/bin/chromium (no browser download): skipped without it,
unless the CI environment variable is set, where a missing browser fails the test.
The notebook is NOTEBOOK (EXPLORER_NOTEBOOK=path overrides it). The test never saves it:
autosave is off in the server's temporary settings, and the server (with its kernel) is
stopped by process group even when the test fails.

A second test executes a tiny notebook with nbclient, as `nbconvert --execute` does, and
checks that the saved explorer output holds a PNG for readers without a kernel.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import execute_cells

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_attention.ipynb"  # override with EXPLORER_NOTEBOOK=path
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 60  # JupyterLab up and answering
NOTEBOOK_RUN_S = 150  # all cells executed (shared CPU: generous)
REDRAW_S = 30  # one control change -> new picture in the page


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (the CI set-up must provide it)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(settings_dir: Path) -> None:
    """No autosave (the test must never write the notebook), no news or update checks."""
    files = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for rel, content in files.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


class JupyterLab:
    """A JupyterLab server in its own process group and temporary config/runtime dirs."""

    def __init__(self, root_dir: Path, tmp: Path):
        self.port, self.token = _free_port(), uuid.uuid4().hex
        env = dict(os.environ)
        for name, sub in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTERLAB_SETTINGS_DIR", "settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
            ("IPYTHONDIR", "ipython"),
        ]:
            (tmp / sub).mkdir(parents=True, exist_ok=True)
            env[name] = str(tmp / sub)
        _settings(tmp / "settings")
        env["PYTHONUNBUFFERED"] = "1"
        self.log = open(tmp / "server.log", "wb")  # noqa: SIM115 (closed in stop())
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={root_dir}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI often run as root
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=root_dir, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kernels die with it
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}")
            try:
                url = f"{self.url}/api/status?token={self.token}"
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s")

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)  # our group only: server + kernels
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
            try:  # a kernel left behind in the group
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        finally:
            self.log.close()


def _image_diff(a: bytes, b: bytes) -> float:
    """Mean absolute pixel difference (0-255) between two screenshots."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.float32)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32)
    if x.shape != y.shape:
        return 255.0
    return float(np.abs(x - y).mean())


def _wait_src_change(page, img, old_src: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        src = img.get_attribute("src")
        if src and src != old_src:
            page.wait_for_timeout(300)  # let the new picture paint
            return img.get_attribute("src")
        page.wait_for_timeout(100)
    raise AssertionError(f"the explorer's picture did not change within {timeout_s} s")


def _click_menu(page, menu: str, command: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    item = page.locator(f'.lm-Menu-item[data-command="{command}"]').first
    item.wait_for(state="visible")
    page.wait_for_timeout(300)  # let the menu settle
    item.click()
    page.locator(".lm-Menu").first.wait_for(state="hidden")
    page.wait_for_timeout(300)


def test_explorer_in_jupyterlab():
    if not CHROMIUM.exists():
        _missing(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed")
    notebook = Path(os.environ.get("EXPLORER_NOTEBOOK", NOTEBOOK)).resolve()
    if not notebook.exists():
        _missing(f"{notebook} does not exist")
    root_dir = ROOT if notebook.is_relative_to(ROOT) else notebook.parent.parent
    rel = notebook.relative_to(root_dir).as_posix()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="explorer-browser-"))
    checkpoints = notebook.parent / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()  # JupyterLab makes one when it opens a notebook
    server = JupyterLab(root_dir, tmp)
    try:
        server.wait_ready(SERVER_START_S)
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp / "chromium-profile"),  # a fresh user-data-dir
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(30_000)
                try:
                    _run(page, server, rel)
                except Exception:
                    page.screenshot(path=str(ARTIFACTS / "explorer_failure.png"))
                    raise
            finally:
                context.close()
    except Exception:
        log = (tmp / "server.log").read_text(errors="replace")[-3000:]
        print(f"--- JupyterLab log (tail) ---\n{log}")
        raise
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if not had_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)


def _run(page, server: JupyterLab, rel: str) -> None:
    page.goto(f"{server.url}/lab/tree/{rel}?reset&token={server.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=SERVER_START_S * 1000)
    # the kernel is up when the toolbar's indicator says idle
    page.wait_for_selector(
        '.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=SERVER_START_S * 1000
    )
    _click_menu(page, "Edit", "editmenu:clear-all")  # no explorer left from a saved run
    _click_menu(page, "Run", "runmenu:run-all")
    explorer = page.locator(".attention-explorer").first
    explorer.wait_for(state="visible", timeout=NOTEBOOK_RUN_S * 1000)
    # widget callbacks queue behind running cells: wait until every cell has run
    deadline = time.monotonic() + NOTEBOOK_RUN_S
    while time.monotonic() < deadline:
        busy = page.locator(".jp-InputArea-prompt", has_text="[*]").count()
        idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count()
        if busy == 0 and idle:
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"the notebook did not finish within {NOTEBOOK_RUN_S} s")
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, f"a cell failed:\n{tracebacks[0][:2000]}"

    explorer.scroll_into_view_if_needed()
    img = explorer.locator(".ae-image").first
    img.wait_for(state="visible")
    shots = {"0_start": img.screenshot()}
    explorer.screenshot(path=str(ARTIFACTS / "explorer_0_start.png"))
    src = img.get_attribute("src")

    # 1) the layer slider, moved from the keyboard like a reader would (one step left)
    slider = explorer.locator(".ae-layer")
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first  # ipywidgets 8 / 7
    readout = slider.locator(".widget-readout").first
    before = readout.inner_text().strip()
    handle.click()
    page.keyboard.press("ArrowLeft")
    src = _wait_src_change(page, img, src, REDRAW_S)
    assert readout.inner_text().strip() != before, "the layer slider did not move"
    shots["1_layer"] = img.screenshot()
    explorer.screenshot(path=str(ARTIFACTS / "explorer_1_layer.png"))
    assert _image_diff(shots["0_start"], shots["1_layer"]) > 0.5, "layer change: same heatmap"

    # 2) a patch as the query token: click its button in the grid
    explorer.locator('.ae-grid button[title="patch (2, 5)"]').first.click()
    src = _wait_src_change(page, img, src, REDRAW_S)
    shots["2_query"] = img.screenshot()
    explorer.screenshot(path=str(ARTIFACTS / "explorer_2_query.png"))
    assert _image_diff(shots["1_layer"], shots["2_query"]) > 0.5, "query change: same heatmap"


SAVED_NOTEBOOK_CELLS = [
    """import torch
from helpers.data import CLASSES, ShapesDataset
from helpers.model import VisionTransformer
from helpers.widgets import AttentionExplorer
torch.manual_seed(0)
model = VisionTransformer(embed_dim=16, depth=2, num_heads=2)
explorer = AttentionExplorer(model, ShapesDataset("test", n=20), classes=CLASSES, index=0)""",
    "explorer",
    "explorer.set(layer=0, query=(3, 3), mode='rollout');  # no new output",
]


def test_saved_notebook_shows_a_picture_of_the_explorer(tmp_path):
    """Executed and saved (as nbconvert does), the explorer's output carries a PNG for
    readers without a kernel (GitHub, nbviewer) next to the live widget view, and changing
    it from code adds no output (no stacked figures)."""
    saved = execute_cells(SAVED_NOTEBOOK_CELLS, tmp_path)
    outputs = saved.cells[1].outputs
    assert len(outputs) == 1, [o.output_type for o in outputs]
    data = outputs[0]["data"]
    assert "image/png" in data and "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("AttentionExplorer(test image #0")
    from PIL import Image

    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.size[0] >= 400
    assert saved.cells[2].outputs == [], "changing the explorer must not add output"
    assert not saved.cells[0].outputs, "building the explorer prints nothing"
