"""The install paths agree: environment.yml (Binder/conda), requirements.txt (pip), pyproject."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch-cpu": "torch"}  # conda-forge name -> PyPI name


def _name_and_spec(line: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", line)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def requirements() -> dict:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(_name_and_spec(ln) for ln in lines if ln.strip() and not ln.startswith("#"))


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


def test_environment_yml_lists_the_same_packages_as_requirements():
    assert conda_packages() == requirements()


def test_environment_pins_python_for_binder():
    assert re.search(r"^\s*- python=3\.\d+", (ROOT / "environment.yml").read_text(), re.M)


def test_pyproject_dependencies_are_in_requirements():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    deps = dict(_name_and_spec(d) for d in re.findall(r'"([^"]+)"', block))
    reqs = requirements()
    assert all(reqs.get(k) == v for k, v in deps.items()), (deps, reqs)


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert nb.name in readme, f"{nb.name} is missing from README.md"
