"""Fixtures shared by the tests: small models, timm when it is installed, and the way an
exercise check reports a wrong answer."""

import os

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


@pytest.fixture
def tiny_vit() -> VisionTransformer:
    return build(**TINY)


@pytest.fixture
def small_vit() -> VisionTransformer:
    return build(**SMALL)


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
    from helpers.exercises import CheckFailed

    assert exercise.check(*answer, quiet=True) is False
    with pytest.raises(CheckFailed) as info:
        exercise.checker(*answer)
    return str(info.value)
