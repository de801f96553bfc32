"""Where the series' files are, however `helpers` was installed.

- From a checkout (the repository on sys.path, or `pip install -e .`): `ROOT` is the
  repository and the files are its `data/` folder.
- From `pip install .` (Colab, Binder, a wheel): there is no repository, `ROOT` is None, and
  the same files come with the package as `helpers/shipped/` (see pyproject.toml).

    from helpers.paths import DATA_DIR, data_file
    ckpt = data_file("vit_shapes.pt")   # a Path, or FileNotFoundError saying how to fix it
"""

from __future__ import annotations

from pathlib import Path

PROJECT = "inside-the-cls-token"
PACKAGE_DIR = Path(__file__).resolve().parent
# Where `pip install .` puts data/*.pt and data/*.json ([tool.setuptools] in pyproject.toml).
PACKAGE_DATA_DIR = PACKAGE_DIR / "shipped"


def _repository_root() -> Path | None:
    """The checkout `helpers/` sits in, or None when it was installed into site-packages."""
    root = PACKAGE_DIR.parent
    try:
        pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if f'name = "{PROJECT}"' in pyproject else None


ROOT: Path | None = _repository_root()
DATA_DIR: Path = (
    ROOT / "data" if ROOT is not None and (ROOT / "data").is_dir() else PACKAGE_DATA_DIR
)


def data_file(name: str) -> Path:
    """The path of a shipped file such as "vit_shapes.pt"; FileNotFoundError if it is missing."""
    path = DATA_DIR / name
    if path.is_file():
        return path
    stem = Path(name).stem
    if ROOT is not None:
        fix = (
            f"rebuild it with `python -m helpers.train --out data/{stem}.pt` "
            f"(run in {ROOT}; it writes data/{stem}.pt and data/{stem}.json)"
        )
        if name in ("vit_shapes.pt", "vit_shapes.json"):
            fix += f", or restore the shipped one with `git checkout -- data/{name}`"
    elif any(DATA_DIR.glob("*.pt")):
        shipped = ", ".join(sorted(p.name for p in DATA_DIR.iterdir() if p.is_file()))
        fix = (
            f"the installed series ships {shipped}; train another checkpoint with "
            "`python -m helpers.train --out PATH` and load it from PATH"
        )
    else:
        fix = (
            "this copy of `helpers` was installed without the series' data files: install "
            "the series with `pip install .` from a clone of its repository"
        )
    raise FileNotFoundError(f"{name} is not in {DATA_DIR}: {fix}.")
