"""The 07_dino_and_clip exercise check: right answers pass, common slips get a helpful
message."""

import pytest
import torch

from helpers.exercises.nb07_dino_clip import ex_teacher_targets
from tests.conftest import failure


def right(t, c, temp):
    return torch.softmax((t - c) / temp, dim=-1)


def test_right_answer_passes():
    assert ex_teacher_targets.check(right, quiet=True)
    from helpers.studies.dino import teacher_probs

    assert ex_teacher_targets.check(teacher_probs, quiet=True)


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda t, c, temp: torch.softmax(t / temp, -1), "no centering"),
        (lambda t, c, temp: torch.softmax((t + c) / temp, -1), "added"),
        (lambda t, c, temp: torch.softmax((t - c) * temp, -1), "multiplied"),
        (lambda t, c, temp: torch.softmax(t - c, -1), "no sharpening"),
        (lambda t, c, temp: torch.softmax((t - c) / temp, 0), "over the batch"),
        (lambda t, c, temp: torch.log_softmax((t - c) / temp, -1), "log-probabilities"),
        (lambda t, c, temp: torch.softmax(t / temp - c, -1), "divided before centering"),
        (lambda t, c, temp: (t - c) / temp, "not softmax"),
        (lambda t, c, temp: torch.softmax((t - c) / temp, -1)[0], "shape"),
        (lambda t, c, temp: None, "tensor"),
    ],
)
def test_slips_are_named(wrong, words):
    assert words in failure(ex_teacher_targets, wrong)
