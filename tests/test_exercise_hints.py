"""Hints of notebooks 01-04 come in two tiers, the idea then the approach, and never give the code."""

import re

import pytest
import torch

from helpers.exercises.core import CheckFailed, call_for_tensor
from helpers.exercises.nb01_patches import ex_prepend_cls
from helpers.exercises.nb02_positions import ex_fold_cls_slot, ex_resample_hw
from helpers.exercises.nb03_attention import ex_attention, ex_object_mask
from helpers.exercises.nb04_classification import ex_gap_pool, ex_saved_parameters

EXERCISES = [
    ex_prepend_cls,
    ex_fold_cls_slot,
    ex_resample_hw,
    ex_attention,
    ex_object_mask,
    ex_gap_pool,
    ex_saved_parameters,
]


def code_lines(solution: str) -> list[str]:
    """The statements of a solution's code block, comments and `def`/`return` lines aside."""
    body = re.search(r"```python\n(.*?)```", solution, re.S).group(1)
    lines = [ln.split("#")[0].strip() for ln in body.splitlines()]
    return [ln for ln in lines if len(ln) > 12 and not ln.startswith(("def ", "return "))]


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_two_tiers_and_no_code(ex, capsys):
    assert len(ex.hints) == 2, f"{ex.name}: the idea, then the approach"
    idea, approach = ex.hints
    assert len(idea) > 40 and len(approach) > 40
    for line in code_lines(ex.solution_text):
        assert line not in idea and line not in approach, f"{ex.name} gives away: {line}"
    assert "```" not in idea + approach
    ex.hint_reset()
    ex.hint(), ex.hint(), ex.hint()
    out = capsys.readouterr().out
    assert "Hint 1 of 2" in out and "Hint 2 of 2" in out and "solution()" in out
    ex.hint_reset()


def test_call_for_tensor_names_each_way_a_learners_function_can_fail():
    def shapes_clash(a):
        return a @ a  # (2, 3) @ (2, 3): torch raises

    cases = [
        (shapes_clash, "torch raised: .*mat1 and mat2.*\\. Check the shapes\\."),
        (lambda a: None, "your function returned None: `return` it\\."),
        (lambda a: a.tolist(), "expected a tensor, got list\\."),
    ]
    for fn, says in cases:
        with pytest.raises(CheckFailed, match=says):
            call_for_tensor(
                fn, torch.ones(2, 3), torch_hint="Check the shapes.", if_none="`return` it."
            )
    out = call_for_tensor(lambda a: 2 * a, torch.ones(2, 3), torch_hint="", if_none="")
    assert torch.equal(out, torch.full((2, 3), 2.0))
