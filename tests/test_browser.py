"""The attention explorer in a real browser (Playwright + Debian's headless Chromium).

1. JupyterLab at 1280x800 with the file browser open: runs the attention notebook, checks
   that the picture, the prediction and every control are on screen together, then drives
   the view as a reader: a click on a patch (the query), the layer slider, the heads menu,
   raw/rollout, the colour scale, the next test image (a round trip to the kernel), the
   keyboard (arrow keys on the slider stay out of JupyterLab's shortcuts, a number typed +
   Enter, an out-of-range number with its message) and an upload, which must show its caution.
2. Without a kernel and without network (every non-file request aborted): the nbconvert
   HTML of the committed attention notebook, and a page written by the static export,
   opened from file:// URLs. The explorer must draw and answer a layer change, a patch
   click and the arrow keys on its layer slider.

Screenshots go to tests/artifacts/ (gitignored). Needs Debian's Chromium at /usr/bin/chromium
(no browser download): skipped without it, unless the CI environment variable is set, where
a missing browser fails the test. The notebook is NOTEBOOK (EXPLORER_NOTEBOOK=path overrides
it). The JupyterLab test never saves it: autosave is off in the server's temporary settings,
and the server (with its kernel) is stopped by process group even when the test fails.

A last test executes a tiny notebook with nbclient, as `nbconvert --execute` does, and checks
what the saved explorer output holds for readers without a kernel.
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


VIEWPORT = {"width": 1280, "height": 800}  # a lecture projector


def _browser_or_skip():
    if not CHROMIUM.exists():
        _missing(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed")
    return sync_playwright


def _click_menu(page, menu: str, command: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    item = page.locator(f'.lm-Menu-item[data-command="{command}"]').first
    item.wait_for(state="visible")
    page.wait_for_timeout(300)  # let the menu settle
    item.click()
    page.locator(".lm-Menu").first.wait_for(state="hidden")
    page.wait_for_timeout(300)


def _canvas_pixels(view) -> str:
    """The heatmap canvas as a data URL: it changes when the map does."""
    return view.locator("canvas.clsx-canvas").evaluate("c => c.toDataURL()")


def _wait_for(view, what: str, predicate_js: str, timeout_s: float) -> None:
    """Wait until `predicate_js` (a function of the .clsx element) is true."""
    try:
        view.page.wait_for_function(
            f"el => ({predicate_js})(el)", arg=view.element_handle(), timeout=timeout_s * 1000
        )
    except Exception as e:
        raise AssertionError(f"{what}: not seen within {timeout_s} s") from e


def _click_patch(view, row: int, col: int, grid: int = 8) -> None:
    box = view.locator("canvas.clsx-canvas").bounding_box()
    cell = box["width"] / grid
    view.page.mouse.click(box["x"] + (col + 0.5) * cell, box["y"] + (row + 0.5) * cell)


def _title(view) -> str:
    return " ".join(view.locator(".clsx-title").inner_text().split())


def _check_layer_and_patch(view, artifacts_prefix: str, timeout_s: float = 10) -> None:
    """The checks both the live and the static view must pass: a layer change and a click
    on a patch each redraw the map, the title and the outline."""
    page = view.page
    start = _canvas_pixels(view)
    assert start.startswith("data:image/png") and len(start) > 2000, "the view drew nothing"
    layer = view.locator("input.clsx-layer-input")
    before = view.get_attribute("data-layer")
    box = layer.bounding_box()  # a click at the track's end: layer 0 (or the last from 0)
    x = box["x"] + (3 if before != "0" else box["width"] - 3)
    page.mouse.click(x, box["y"] + box["height"] / 2)
    _wait_for(view, "layer change", f"el => el.dataset.layer !== '{before}'", timeout_s)
    after_layer = _canvas_pixels(view)
    assert after_layer != start, "a layer change left the map as it was"
    assert f"layer {view.get_attribute('data-layer')} " in _title(view) + " "
    _click_patch(view, 2, 5)
    _wait_for(view, "patch click", "el => el.dataset.query === String(1 + 2 * 8 + 5)", timeout_s)
    assert "patch (2, 5)" in _title(view)
    assert _canvas_pixels(view) != after_layer, "a click on a patch left the map as it was"
    view.screenshot(path=str(ARTIFACTS / f"{artifacts_prefix}_patch.png"))
    _click_patch(view, 2, 5)  # the same patch again: back to CLS
    _wait_for(view, "back to CLS", "el => el.dataset.query === '0'", timeout_s)


def _focus_state(page) -> dict:
    """Where JupyterLab stands: the active cell, the notebook's mode and the focused element."""
    return page.evaluate(
        """() => {
        const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
        const nb = document.querySelector('.jp-Notebook');
        const a = document.activeElement;
        return {
          active: cells.findIndex((c) => c.classList.contains('jp-mod-active')),
          mode: nb ? (nb.classList.contains('jp-mod-editMode') ? 'edit' : 'command') : null,
          cells: cells.length,
          focus: a ? a.className : null,
        };
    }"""
    )


def _shows_image(i: int) -> str:
    """A predicate for _wait_for: the view shows test image #i (not #i0, #i1...)."""
    return f"el => /test image #{i}\\b/.test(el.querySelector('.clsx-source').textContent)"


def _check_layer_keys(view, timeout_s: float = 10) -> None:
    """The focused layer slider answers the arrow keys (and keeps them: in JupyterLab
    ArrowDown would otherwise select the next cell)."""
    page = view.page
    layer = view.locator("input.clsx-layer-input")
    box = layer.bounding_box()  # a click at the track's start: layer 0, and the focus
    page.mouse.click(box["x"] + 3, box["y"] + box["height"] / 2)
    _wait_for(view, "layer 0", "el => el.dataset.layer === '0'", timeout_s)
    assert layer.evaluate("el => el === document.activeElement"), "the slider has the focus"
    before = _focus_state(page)
    start = _canvas_pixels(view)
    page.keyboard.press("ArrowRight")
    _wait_for(view, "ArrowRight: layer 1", "el => el.dataset.layer === '1'", timeout_s)
    assert "layer 1 " in _title(view) + " " and _canvas_pixels(view) != start
    assert layer.input_value() == "1"
    page.keyboard.press("ArrowDown")  # a notebook shortcut (next cell) when it escapes
    _wait_for(view, "ArrowDown: layer 0", "el => el.dataset.layer === '0'", timeout_s)
    page.keyboard.press("ArrowUp")
    _wait_for(view, "ArrowUp: layer 1", "el => el.dataset.layer === '1'", timeout_s)
    page.keyboard.press("ArrowLeft")
    _wait_for(view, "ArrowLeft: layer 0", "el => el.dataset.layer === '0'", timeout_s)
    page.wait_for_timeout(300)  # a stray shortcut would have acted by now
    assert _focus_state(page) == before, "an arrow key reached JupyterLab"
    assert layer.evaluate("el => el === document.activeElement"), "the slider kept the focus"


# ---------------- 1. JupyterLab, live kernel ----------------


def test_explorer_in_jupyterlab():
    sync_playwright = _browser_or_skip()
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
                viewport=VIEWPORT,
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(30_000)
                try:
                    _run_lab(page, server, rel, tmp)
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


def _open_file_browser(page) -> None:
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]').first
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    page.locator("#filebrowser").wait_for(state="visible")


def _run_lab(page, server: JupyterLab, rel: str, tmp: Path) -> None:
    page.goto(f"{server.url}/lab/tree/{rel}?reset&token={server.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=SERVER_START_S * 1000)
    # the kernel is up when the toolbar's indicator says idle
    page.wait_for_selector(
        '.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=SERVER_START_S * 1000
    )
    _open_file_browser(page)
    _click_menu(page, "Edit", "editmenu:clear-all")  # no explorer left from a saved run
    _click_menu(page, "Run", "runmenu:run-all")
    view = page.locator(".jp-OutputArea-output .clsx").first
    view.wait_for(state="visible", timeout=NOTEBOOK_RUN_S * 1000)
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

    # one screen: the picture, the prediction and every control inside the 1280x800 window
    for _ in range(10):  # JupyterLab may scroll back to the active cell: until it stays
        view.evaluate("el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        box = view.bounding_box()
        if box and 0 <= box["y"] < 150:
            break
    assert page.locator("#filebrowser").is_visible(), "the file browser sidebar is open"
    page.screenshot(path=str(ARTIFACTS / "explorer_0_lab_1280x800.png"))
    parts = {
        "picture": "canvas.clsx-canvas",
        "colorbar": "canvas.clsx-cbar",
        "title": ".clsx-title",
        "prediction": ".clsx-pred",
        "test image": ".clsx-images",
        "layer": "input.clsx-layer-input",
        "heads": "select.clsx-head-select",
        "raw/rollout": ".clsx-mode",
        "scale": ".clsx-scale",
        "CLS button": "button.clsx-prefix",
        "upload": "input.clsx-file",
    }
    for name, selector in parts.items():
        box = view.locator(selector).first.bounding_box()
        assert box is not None, f"{name} is not drawn"
        inside = box["x"] >= 0 and box["y"] >= 0
        inside &= box["x"] + box["width"] <= VIEWPORT["width"]
        inside &= box["y"] + box["height"] <= VIEWPORT["height"]
        assert inside, f"{name} is off screen at 1280x800 with the sidebar open: {box}"

    _check_layer_and_patch(view, "explorer_1_lab")
    start = _canvas_pixels(view)
    view.locator("select.clsx-head-select").select_option("0")
    _wait_for(view, "head 0", "el => el.dataset.head === '0'", 10)
    assert "head 0" in _title(view) and _canvas_pixels(view) != start
    view.locator(".clsx-mode button[data-value=rollout]").click()
    _wait_for(view, "rollout", "el => el.dataset.mode === 'rollout'", 10)
    assert "Attention rollout" in _title(view) and "mean over heads" in _title(view)
    assert "residual" in view.locator(".clsx-note").inner_text()
    assert "head 0 comes back" in view.locator(".clsx-note").inner_text()
    view.locator(".clsx-mode button[data-value=raw]").click()
    _wait_for(view, "back to raw, head 0", "el => el.dataset.head === '0'", 10)
    cbar = view.locator("canvas.clsx-cbar")
    assert view.get_attribute("data-scale") == "shared", "one scale across layers by default"
    view.locator(".clsx-scale button[data-value=map]").click()
    _wait_for(view, "this map's scale", "el => el.dataset.scale === 'map'", 10)
    assert cbar.get_attribute("data-scale") == "map"
    page.screenshot(path=str(ARTIFACTS / "explorer_2_lab_controls.png"))

    # a new test image: the kernel computes its maps
    source = view.locator(".clsx-source")
    first = source.inner_text()
    view.locator("button.clsx-next").click()
    _wait_for(
        view, "next test image", f"el => !el.textContent.includes({json.dumps(first)})", REDRAW_S
    )
    assert "test image #1" in source.inner_text()

    # the keyboard: the layer slider's arrow keys, a number typed + Enter, out of range
    _check_layer_keys(view)
    number = view.locator("input.clsx-index")
    note = view.locator(".clsx-index-note")
    number.click()
    before = _focus_state(page)
    start = _canvas_pixels(view)
    number.fill("4")
    number.press("Enter")  # no blur, no Tab: Enter alone shows the image
    _wait_for(view, "Enter: test image #4", _shows_image(4), REDRAW_S)
    page.wait_for_function(
        "c => c.toDataURL() !== " + json.dumps(start),
        arg=view.locator("canvas.clsx-canvas").element_handle(),
        timeout=REDRAW_S * 1000,
    )
    assert number.evaluate("el => el === document.activeElement"), "Enter kept the focus"
    assert _focus_state(page) == before, "typing + Enter reached JupyterLab"
    assert note.inner_text().strip() == "", "no message for a number in range"
    last = int(number.get_attribute("max"))
    number.fill(str(last + 1000))
    number.press("Enter")
    _wait_for(view, "the clamped image", _shows_image(last), REDRAW_S)
    assert note.is_visible() and f"images 0–{last}: showing {last}" in note.inner_text()
    assert number.input_value() == str(last)
    size = note.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")
    assert size >= 13, f"the message is {size} px"
    box = note.bounding_box()
    assert box["y"] + box["height"] <= VIEWPORT["height"], "the message is off screen"
    page.screenshot(path=str(ARTIFACTS / "explorer_2b_lab_out_of_range.png"))
    assert _focus_state(page) == before
    number.fill("2")
    number.press("Enter")
    _wait_for(view, "Enter: test image #2", _shows_image(2), REDRAW_S)
    assert note.inner_text().strip() == "", "a valid number clears the message"
    number.blur()  # Tab / blur still commit
    number.fill("3")
    page.keyboard.press("Tab")
    _wait_for(view, "Tab: test image #3", _shows_image(3), REDRAW_S)

    # an upload: a drawing on white, which the model was never trained on
    from PIL import Image, ImageDraw

    drawing = Image.new("RGB", (120, 120), "white")
    ImageDraw.Draw(drawing).ellipse((20, 20, 100, 100), outline="black", width=6)
    path = tmp / "my drawing.png"
    drawing.save(path)
    view.locator("input.clsx-file").set_input_files(str(path))
    caution = view.locator(".clsx-caution")
    caution.wait_for(state="visible", timeout=REDRAW_S * 1000)
    assert "six shapes" in caution.inner_text()
    assert "your image: my drawing.png" in view.locator(".clsx-source").inner_text()
    box = caution.bounding_box()
    assert box["y"] + box["height"] <= VIEWPORT["height"], "the caution is off screen"
    page.screenshot(path=str(ARTIFACTS / "explorer_3_lab_upload.png"))


# ---------------- 2. no kernel, no network ----------------


def _offline_page(pw, tmp: Path):
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport=VIEWPORT)
    blocked, errors = [], []

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page, blocked, errors


def _check_static_page(page, url: str, name: str, errors: list) -> None:
    page.goto(url)
    view = page.locator(".clsx").first
    try:
        view.wait_for(state="visible", timeout=20_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"{name}_failure.png"))
        raise AssertionError(f"{name}: the explorer did not draw; page errors: {errors}") from None
    view.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(ARTIFACTS / f"{name}_0.png"))
    assert view.locator(".clsx-pick").count() >= 2, "the static view offers several images"
    _check_layer_and_patch(view, name)
    _check_layer_keys(view)
    second = view.locator(".clsx-pick").nth(1)
    second.click()
    _wait_for(
        view,
        "image switch",
        "el => el.querySelectorAll('.clsx-pick')[1].classList.contains('clsx-on')",
        10,
    )
    assert not errors, errors


def test_static_export_works_offline(tmp_path):
    sync_playwright = _browser_or_skip()
    import torch

    from helpers.data import CLASSES, ShapesDataset
    from helpers.explorer.widget import AttentionExplorer
    from helpers.model import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(embed_dim=16, depth=2, num_heads=2)
    explorer = AttentionExplorer(model, ShapesDataset("test", n=20), classes=CLASSES)
    page_file = explorer.save_html(tmp_path / "explorer.html")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page, blocked, errors = _offline_page(pw, tmp_path)
        try:
            _check_static_page(page, page_file.as_uri(), "static_export", errors)
        finally:
            browser.close()
    assert not blocked, f"the static view asked the network for {blocked}"


def test_nbconvert_html_of_the_committed_notebook_works_offline(tmp_path):
    """The committed notebook as HTML (nbconvert, no execution): its saved explorer output
    must be the working kernel-free view. Needs the notebook executed with this code."""
    sync_playwright = _browser_or_skip()
    notebook = Path(os.environ.get("EXPLORER_NOTEBOOK", NOTEBOOK)).resolve()
    text = notebook.read_text(encoding="utf-8")
    if "clsx" not in text:
        _missing(
            f"{notebook.name} holds no kernel-free explorer view: re-execute it "
            f"(jupyter nbconvert --execute --inplace) with this version of helpers"
        )
    out = tmp_path / "notebook.html"
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(notebook)]
        + ["--output", out.stem, "--output-dir", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page, blocked, errors = _offline_page(pw, tmp_path)
        try:
            _check_static_page(page, out.as_uri(), "nbconvert_html", errors)
        finally:
            browser.close()


# ---------------- 3. what a saved notebook holds ----------------


SAVED_NOTEBOOK_CELLS = [
    """import torch
from helpers.data import CLASSES, ShapesDataset
from helpers.model import VisionTransformer
from helpers.explorer.widget import AttentionExplorer
torch.manual_seed(0)
model = VisionTransformer(embed_dim=16, depth=2, num_heads=2)
explorer = AttentionExplorer(model, ShapesDataset("test", n=20), classes=CLASSES, index=0)""",
    "explorer",
    "explorer.set(layer=0, query=(3, 3), mode='rollout');  # no new output",
]


def test_saved_notebook_holds_the_static_view_and_a_picture(tmp_path):
    """Executed and saved (as nbconvert does), the explorer's output carries the kernel-free
    view (HTML + JS) and a PNG for readers without a kernel, next to the live widget view;
    changing it from code adds no output (no stacked figures)."""
    saved = execute_cells(SAVED_NOTEBOOK_CELLS, tmp_path)
    outputs = saved.cells[1].outputs
    assert len(outputs) == 1, [o.output_type for o in outputs]
    data = outputs[0]["data"]
    assert {"image/png", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(data)
    assert data["text/plain"].startswith("AttentionExplorer(test image #0")
    assert "cls-explorer-static" in data["text/html"] and data["image/png"] in data["text/html"]
    from PIL import Image

    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.size[0] >= 400
    assert saved.cells[2].outputs == [], "changing the explorer must not add output"
    assert not saved.cells[0].outputs, "building the explorer prints nothing"
