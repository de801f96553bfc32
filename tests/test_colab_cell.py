"""The Colab cell: one template (scripts/colab_cell.py), one repository URL (pyproject.toml).

Every notebook's first code cell is that template; the README links to the same repository;
and the cell, run as Colab runs it, installs the series so that `import helpers` works in the
same process, with no restart of the runtime.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.test_packaging import copy_checkout

ROOT = Path(__file__).resolve().parents[1]
SYNC = "python scripts/sync_notebooks.py"


def _load_sync():
    spec = importlib.util.spec_from_file_location(
        "sync_notebooks", ROOT / "scripts/sync_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _load_sync()
URL = sync.repository_url()
OWNER_NAME = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", URL).group(1)


def _substitute(cell: str, name: str, value: str) -> str:
    """Replace the module-level constant `NAME = "..."` of the cell (exactly one such line)."""
    pattern = re.compile(rf'^{name} = "[^"\n]*"$', re.M)
    assert len(pattern.findall(cell)) == 1, f"the Colab cell must set {name} once, at top level"
    return pattern.sub(f"{name} = {json.dumps(value)}", cell)


# ---------------- one template, one URL ----------------


def test_template_has_one_placeholder_and_the_constants():
    cell = sync.render_cell()
    assert URL in cell and "@REPOSITORY@" not in cell
    for name in ("REPO", "TARGET"):
        _substitute(cell, name, "x")
    assert "!" not in cell.replace("!=", "") and "%" not in cell, "no IPython magics: plain Python"


@pytest.mark.parametrize("nb", sync.notebooks(), ids=lambda p: p.stem)
def test_first_code_cell_is_the_colab_cell(nb):
    notebook = json.loads(nb.read_text(encoding="utf-8"))
    cells = notebook["cells"]
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert first_code == 1 and cells[0]["cell_type"] == "markdown", (
        f"{nb.name}: the Colab cell must be the first code cell, right after the title cell"
    )
    assert sync.cell_source(cells[first_code]) == sync.render_cell(), (
        f"{nb.name}: its first code cell is not scripts/colab_cell.py with the repository URL "
        f"of pyproject.toml; run `{SYNC}` (it rewrites that cell in every notebook)"
    )


@pytest.mark.parametrize("nb", sync.notebooks(), ids=lambda p: p.stem)
def test_no_widget_state_is_stored(nb):
    """Saved widget state wins over each widget's PNG in static renders, which then show an
    empty output; without it nbconvert HTML shows the picture."""
    notebook = json.loads(nb.read_text(encoding="utf-8"))
    assert "widgets" not in notebook["metadata"], f"{nb.name} stores widget state: run `{SYNC}`"
    assert not sync.widget_views(notebook), (
        f"{nb.name} keeps widget views that JupyterLab shows as 'model not found' before the "
        f"notebook runs, instead of their HTML or PNG: run `{SYNC}`"
    )


def test_sync_keeps_the_static_forms_of_a_widget_output(tmp_path):
    data = {sync.WIDGET_VIEW: {"model_id": "x"}, "text/html": "<div/>", "text/plain": "x"}
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "# 99 · A title", "metadata": {}},
            {
                "cell_type": "code",
                "source": "",
                "outputs": [{"output_type": "display_data", "data": dict(data), "metadata": {}}],
                "metadata": {},
                "execution_count": 1,
            },
        ],
        "metadata": {"widgets": {}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert sync.sync(path, "# On Colab: ... google.colab")
    out = json.loads(path.read_text())
    kept = [o["data"] for c in out["cells"] for o in c.get("outputs", [])]
    assert kept == [{"text/html": "<div/>", "text/plain": "x"}]
    assert "widgets" not in out["metadata"]


def test_readme_links_use_the_repository_url():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    patterns = {
        "GitHub": r"https://github\.com/([\w.-]+/[\w.-]+)",
        "Colab": r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/",
        "Binder": r"https://mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/",
    }
    for what, pattern in patterns.items():
        found = re.findall(pattern, readme)
        assert found, f"README.md has no {what} link to the repository"
        wrong = {f.removesuffix(".git") for f in found} - {OWNER_NAME}
        assert not wrong, f"README.md's {what} links name {wrong}, pyproject.toml {OWNER_NAME}"


# ---------------- the cell, run as on Colab ----------------

RUN_AS_COLAB = """
import importlib.util, json, os, sys, types

cell = open(sys.argv[1]).read()
if sys.argv[2] == "colab":
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
# as on a fresh runtime: helpers is not importable yet, and the import system has looked
assert importlib.util.find_spec("helpers") is None
user_ns = {"__name__": "__main__"}
exec(compile(cell, "<colab cell>", "exec"), user_ns)
if sys.argv[2] != "colab":
    sys.exit(0)
exec(compile(cell, "<colab cell>", "exec"), user_ns)  # run again: harmless

import helpers, helpers.paths
import torch

ckpt = helpers.paths.data_file("vit_shapes.pt")
torch.load(ckpt, weights_only=True)
print(json.dumps({"helpers": helpers.__file__, "root": str(helpers.paths.ROOT),
                  "checkpoint": str(ckpt), "cwd": os.getcwd()}))
"""


def _venv_without_helpers(tmp: Path) -> Path:
    """A new venv that sees this environment's packages (pip, setuptools, torch, ...) but not
    `helpers`.

    Its site-packages gets a .pth naming a folder of links to this environment's packages,
    minus this project's own install; .pth files in that folder are not run, so no editable
    finder can bring back the checkout's `helpers`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    links = tmp / "deps"
    links.mkdir()
    own = ("helpers", "inside_the_cls_token", "__editable__")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(own) and entry.suffix != ".pth":
            (links / entry.name).symlink_to(entry)
    (site / "_deps.pth").write_text(f"{links}\n")
    return python


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_cell_installs_the_series_on_colab_without_a_restart(tmp_path):
    pytest.importorskip("torch")
    # The clone source: this working tree as one commit (the cell clones with --depth 1).
    src = copy_checkout(tmp_path / "src")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-gpg-sign", "-m", "t"]):
        subprocess.run(git + args, cwd=src, check=True, capture_output=True)
    target = tmp_path / "content" / "inside-the-cls-token"
    cell = sync.render_cell(url=f"file://{src}")
    cell = _substitute(cell, "TARGET", str(target))
    (tmp_path / "cell.py").write_text(cell)
    python = _venv_without_helpers(tmp_path)
    has_setuptools = subprocess.run([str(python), "-c", "import setuptools"]).returncode == 0

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # Offline and fast: pip installs only the series (Colab has its dependencies) and builds
    # it with the venv's setuptools. (pip reads PIP_NO_BUILD_ISOLATION=0 as "no isolation".)
    env.update(PIP_NO_DEPS="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if has_setuptools:
        env["PIP_NO_BUILD_ISOLATION"] = "0"
    else:
        env.pop("PIP_NO_INDEX")
    script = tmp_path / "run_as_colab.py"
    script.write_text(textwrap.dedent(RUN_AS_COLAB))

    def run_cell(frontend: str) -> subprocess.CompletedProcess:
        args = [str(python), str(script), str(tmp_path / "cell.py"), frontend]
        return subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    # Outside Colab: nothing happens, nothing is printed.
    quiet = run_cell("jupyter")
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("", "")
    assert not target.exists()

    run = run_cell("colab")
    assert run.returncode == 0, run.stdout + run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    site = str(tmp_path / "venv")
    assert got["helpers"].startswith(site), f"helpers came from {got['helpers']}, not the install"
    assert got["checkpoint"].startswith(site) and got["root"] == "None"
    assert got["cwd"] == str(target / "notebooks")
    assert (target / ".git").is_dir()


def test_the_colab_cell_is_folded_and_no_placeholder_is_left():
    """Readers see the set-up cell folded (JupyterLab hides its code, Colab shows a form with
    its title), and no comment-only cell names a maintenance script."""
    for path in sync.notebooks():
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = sync.colab_cell(nb)
        assert cell is not None, path.name
        assert sync.cell_source(cell).startswith("# @title "), path.name
        assert cell["metadata"].get("jupyter") == {"source_hidden": True}, path.name
        assert cell["metadata"].get("cellView") == "form", path.name
        assert not [c for c in nb["cells"] if sync.is_placeholder(c)], path.name


def test_a_placeholder_is_dropped_and_a_learners_guess_is_kept(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# 09 · A title"},
            {
                "cell_type": "code",
                "metadata": {},
                "outputs": [],
                "source": "# the Colab cell: scripts/sync_notebooks.py writes it",
                "execution_count": None,
            },
            {
                "cell_type": "code",
                "metadata": {},
                "outputs": [],
                "source": "# my guess:",
                "execution_count": None,
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "09_test.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert sync.sync(path, sync.render_cell())
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = [sync.cell_source(c) for c in cells]
    assert "# my guess:" in sources and not any("writes it" in s for s in sources)
    assert sync.colab_cell({"cells": cells})["metadata"]["cellView"] == "form"
    assert not sync.sync(path, sync.render_cell())  # synced: nothing more to change
