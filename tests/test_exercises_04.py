"""The 04_classification exercise checks: right answers pass, common slips get a helpful
message."""

import re

import pytest

from helpers.exercises.nb04_classification import _check_gap_pool, ex_gap_pool, ex_saved_parameters
from tests.conftest import failure


def gap_ok(tokens, num_prefix_tokens):
    return tokens[:, num_prefix_tokens:].mean(dim=1)


def test_gap_pool_right_answer_passes():
    assert ex_gap_pool.check(gap_ok, quiet=True)
    _check_gap_pool(gap_ok)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda t, n: None, "returned None"),
        (lambda t, n: t.mean(dim=1), "the CLS token"),
        (lambda t, n: t[:, 1:].mean(dim=1), "register tokens"),
        (lambda t, n: t[:, n:].mean(dim=-1), "averaged over the width D"),
        (lambda t, n: t.mean(dim=2), "averaged over the width D"),
        (lambda t, n: t[:, n:].mean(dim=0), "averaged over the batch"),
        (lambda t, n: t[:, n:].mean(dim=1, keepdim=True), "keepdim"),
        (lambda t, n: t[:, n:].sum(dim=1), "summed"),
        (lambda t, n: t[:, n:].max(dim=1).values, "not the mean of the patch tokens"),
        (lambda t, n: t[:, -n:].mean(dim=1), "not the mean of the patch"),  # last n tokens
        (lambda t, n: t[:, 0], "not the mean of the patch tokens"),  # CLS pooling
    ],
)
def test_gap_pool_wrong_answers_fail_with_a_helpful_message(wrong, message):
    assert re.search(message, failure(ex_gap_pool, wrong))


def test_gap_pool_crash_is_reported():
    def crashes(tokens, n):
        return tokens[:, n:].mean(dim=5)

    assert "raised IndexError" in failure(ex_gap_pool, crashes)


def test_gap_pool_placeholder_prints_not_yet(capsys):
    def placeholder(tokens, num_prefix_tokens): ...

    assert not ex_gap_pool.check(placeholder)
    assert "Not yet" in capsys.readouterr().out


def saved_ok(dim, pos_embed):
    return dim + (dim if pos_embed == "learn" else 0)


def test_saved_parameters_right_answer_passes():
    assert ex_saved_parameters.check(saved_ok, quiet=True)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda d, pe: None, "returned None"),
        (lambda d, pe: d, "its own row in pos_embed"),
        (lambda d, pe: 2 * d, "buffer, not a parameter"),
        (lambda d, pe: 2 * d if pe != "none" else d, "buffer, not a parameter"),
        (lambda d, pe: 2 * d if pe != "sincos" else d, "no position table at all"),
        (lambda d, pe: 65 * d, "differ by"),
        (lambda d, pe: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_saved_parameters_wrong_answers_fail_with_a_helpful_message(wrong, message):
    assert re.search(message, failure(ex_saved_parameters, wrong))
