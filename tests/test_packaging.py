"""The install paths agree and ship what the notebooks need.

pyproject.toml holds the one list of dependencies; environment.yml (Binder, conda-forge) must
list its runtime + lab part with the same floors; `pip install .` (a wheel) must carry
helpers/*.py and the shipped checkpoint; helpers.paths finds that checkpoint either way.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import paths

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch-cpu": "torch"}  # conda-forge name -> PyPI name
SHIPPED = ("vit_shapes.pt", "vit_shapes.json")


def _name_and_spec(line: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", line)
    spec = m.group(2).split("#", 1)[0].replace(" ", "")
    return m.group(1).lower().replace("_", "-"), ",".join(sorted(filter(None, spec.split(","))))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pyproject_deps(*extras: str) -> dict:
    project = pyproject()["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    return dict(_name_and_spec(d) for d in deps)


def conda_packages() -> dict:
    deps, inside = {}, False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            inside = True
        elif inside and line.strip().startswith("- "):
            name, spec = _name_and_spec(line.strip()[2:])
            if name != "python":
                deps[CONDA_NAMES.get(name, name)] = spec
    return deps


def copy_checkout(dest: Path) -> Path:
    """The files a fresh clone of this working tree would have (no .venv, no build output)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
    )
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): copy the tree
        skip = (".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "artifacts")
        return Path(shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*skip)))
    for rel in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():  # skips files deleted in the working tree
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


# ---------------- one list of dependencies ----------------


def test_environment_yml_lists_runtime_and_lab_dependencies_with_the_same_floors():
    want = pyproject_deps("lab")
    assert conda_packages() == want, (
        "environment.yml (Binder) must list pyproject.toml's dependencies + the [lab] extra, "
        f"with the same versions:\n  environment.yml: {conda_packages()}\n  pyproject:       {want}"
    )


def test_environment_pins_python_for_binder():
    assert re.search(r"^\s*- python=3\.\d+", (ROOT / "environment.yml").read_text(), re.M)


def test_jupyterlab_and_test_tools_are_not_runtime_dependencies():
    runtime = pyproject_deps()
    for name in ("jupyterlab", "notebook", "pytest", "nbval", "ruff", "playwright"):
        assert name not in runtime, f"{name} must be an extra, not a runtime dependency"
    assert "jupyterlab" in pyproject_deps("lab")
    assert {"pytest", "nbval", "psutil"} <= set(pyproject_deps("test"))


def test_dev_extra_includes_lab_and_test():
    dev = pyproject()["project"]["optional-dependencies"]["dev"]
    assert "inside-the-cls-token[lab,test]" in dev


def test_no_second_requirements_list():
    for name in ("requirements.txt", "requirements-dev.txt"):
        assert not (ROOT / name).exists(), f"{name}: the dependencies live in pyproject.toml"
    scripts = [*(ROOT / "scripts").glob("*.sh"), ROOT / "postBuild", ROOT / "Makefile"]
    for script in scripts:
        assert "requirements" not in script.read_text(), f"{script.name} reads a requirements file"


def test_runtime_dependencies_cover_what_helpers_imports():
    imported = set()
    for py in (ROOT / "helpers").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    module_to_dist = {
        "torch": "torch",
        "numpy": "numpy",
        "matplotlib": "matplotlib",
        "ipywidgets": "ipywidgets",
        "anywidget": "anywidget",
        "traitlets": "traitlets",
        "tqdm": "tqdm",
        "PIL": "pillow",
        "IPython": "ipython",
        "scipy": "scipy",
    }
    optional = {"timm"}  # helpers.timm_adapter imports it only when asked, and says so
    stdlib = set(sys.stdlib_module_names) | {"__future__", "helpers"}
    runtime = pyproject_deps()
    for module in sorted(imported - stdlib - optional):
        assert module in module_to_dist, f"helpers imports {module}: add it to pyproject.toml"
        assert module_to_dist[module] in runtime, f"{module_to_dist[module]} is not a dependency"


# ---------------- the wheel ships the data ----------------


def test_wheel_ships_helpers_and_the_checkpoint(tmp_path):
    pytest.importorskip("setuptools")  # the build below uses this environment's setuptools
    torch = pytest.importorskip("torch")
    src = copy_checkout(tmp_path / "src")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # -q still shows pip's warnings: a DEPRECATION of pip's is an install that breaks later
    assert "DEPRECATION" not in done.stdout + done.stderr, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("inside_the_cls_token-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for py in (ROOT / "helpers").rglob("*.py"):  # every package of helpers/, too
            name = py.relative_to(ROOT).as_posix()
            assert name in names, f"{name} is not in the wheel"
        for asset in ("view.js", "view.css"):  # the explorer's browser view
            assert f"helpers/explorer/{asset}" in names, (
                f"helpers/explorer/{asset} is not in the wheel"
            )
        for name in SHIPPED:
            assert f"helpers/shipped/{name}" in names, f"data/{name} is not in the wheel"
            assert zf.read(f"helpers/shipped/{name}") == (ROOT / "data" / name).read_bytes()
        zf.extract("helpers/shipped/vit_shapes.pt", tmp_path / "unzipped")
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "data/"))]
    ckpt = torch.load(tmp_path / "unzipped/helpers/shipped/vit_shapes.pt", weights_only=True)
    assert ckpt


@pytest.mark.parametrize("build", ["build_wheel", "build_editable"])
def test_the_build_prints_no_deprecation_warning(build, tmp_path):
    """pip install ., pip install -e . and make lab all run the setuptools backend on
    pyproject.toml: any deprecation it warns of becomes a failed install some day."""
    pytest.importorskip("setuptools")
    src = copy_checkout(tmp_path / "src")
    (tmp_path / "out").mkdir()
    code = f"from setuptools import build_meta; build_meta.{build}({str(tmp_path / 'out')!r})"
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], cwd=src, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    warnings = [line for line in said.splitlines() if re.search(r"deprecat", line, re.I)]
    assert not warnings, "\n".join(warnings)


def test_the_build_floor_is_the_one_the_project_table_needs():
    requires = pyproject()["build-system"]["requires"]
    assert requires == ["setuptools>=77"]  # the SPDX `license` string needs 77
    assert isinstance(pyproject()["project"]["license"], str)
    assert "setuptools>=77" in pyproject()["project"]["optional-dependencies"]["test"]


# ---------------- helpers.paths ----------------


def test_paths_in_a_checkout():
    assert paths.ROOT == ROOT
    assert paths.DATA_DIR == ROOT / "data"
    for name in SHIPPED:
        assert paths.data_file(name) == ROOT / "data" / name


def test_missing_file_in_a_checkout_names_the_rebuild_command():
    with pytest.raises(FileNotFoundError, match=r"python -m helpers\.train --out data/other\.pt"):
        paths.data_file("other.pt")


def test_missing_data_in_an_install_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "ROOT", None)
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path / "shipped")
    with pytest.raises(FileNotFoundError, match=r"pip install \.` from a clone"):
        paths.data_file("vit_shapes.pt")


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert nb.name in readme, f"{nb.name} is missing from README.md"
