"""Fixtures shared by the tests: small models, timm when it is installed, and the way an
exercise check reports a wrong answer."""

import os
from pathlib import Path

import matplotlib
import pytest
import torch

from helpers.model import VisionTransformer
from helpers.timm_adapter import import_timm_vit

matplotlib.use("Agg")  # unit tests draw figures off screen (the notebooks use their own)

TINY = dict(embed_dim=16, depth=1, num_heads=2)  # the fastest model that has every part
SMALL = dict(embed_dim=32, depth=2, num_heads=4)


def build(seed: int = 0, **kw) -> VisionTransformer:
    """A seeded VisionTransformer in eval mode (ViTConfig overrides in `kw`)."""
    torch.manual_seed(seed)
    return VisionTransformer(**kw).eval()


@pytest.fixture(scope="session")
def timm_vit_class():
    """timm's VisionTransformer class: skipped without timm, but required under CI."""
    cls = import_timm_vit()
    if cls is None:
        if os.environ.get("CI"):
            pytest.fail("timm is not installed in CI: the set-up must install it (--no-deps)")
        pytest.skip("timm not installed")
    return cls


def failure(exercise, *answer) -> str:
    """The message an exercise check raises for a wrong answer (check() must say False)."""
    from helpers.exercises.core import CheckFailed

    assert exercise.check(*answer, quiet=True) is False
    with pytest.raises(CheckFailed) as info:
        exercise.checker(*answer)
    return str(info.value)


ROOT = Path(__file__).resolve().parents[1]


def execute_cells(cells: list[str], tmp_path: Path):
    """Run code cells in a fresh kernel as nbconvert --execute does; the saved notebook."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    old = os.environ.get("JUPYTER_RUNTIME_DIR")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    try:
        nbclient.NotebookClient(
            nb, timeout=120, resources={"metadata": {"path": str(ROOT)}}
        ).execute()
    finally:
        if old is None:
            os.environ.pop("JUPYTER_RUNTIME_DIR", None)
        else:
            os.environ["JUPYTER_RUNTIME_DIR"] = old
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)
