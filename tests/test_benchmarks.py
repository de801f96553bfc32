"""The benchmark scripts refuse bad arguments before any work, and their recipe list holds
the shipped recipe (benchmarks/recipes.py compares every candidate with it)."""

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from helpers.train import TrainConfig

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
sys.path.insert(0, BENCHMARKS)  # the scripts import each other as plain modules
try:
    import recipes
finally:
    sys.path.remove(BENCHMARKS)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["no such recipe"], "unknown recipe"),
        (["--seeds", "one"], "whole numbers"),
        (["--seeds", ","], "at least one seed"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_recipes_refuses_bad_arguments(argv, says, capsys):
    with pytest.raises(SystemExit):
        recipes.main(argv)
    assert says in capsys.readouterr().err


def test_the_first_recipe_is_the_shipped_one_and_the_others_differ():
    first, *others = recipes.RECIPES.values()
    assert first == TrainConfig()
    assert all(replace(r, seed=0) != TrainConfig() for r in others)
    assert len(set(map(repr, recipes.RECIPES.values()))) == len(recipes.RECIPES)
