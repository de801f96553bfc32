"""The 05_layers_and_explanations exercise checks: right answers pass, common slips get a
helpful message."""

import re

import pytest
import torch
import torch.nn.functional as F

from helpers.exercises.nb05_layers import ex_logit_lens, ex_mean_ablate
from tests.conftest import failure


def lens_ok(model, states):
    return model.head(model.norm(states))


def test_logit_lens_right_answer_passes():
    assert ex_logit_lens.check(lens_ok, quiet=True)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda m, s: None, "returned None"),
        (lambda m, s: m.head(s), "skipped the final LayerNorm"),
        (lambda m, s: m.head(F.layer_norm(s, s.shape[-1:], eps=1e-6)), "without its learned"),
        (lambda m, s: m.head(m.norm(s)).softmax(-1), "probabilities"),
        (lambda m, s: m.head(m.norm(s)) + 1.0, "not model.head"),
        (lambda m, s: m.head(m.norm(s))[:, :3], "expected logits"),
        (lambda m, s: m.heads(s), "raised AttributeError"),
    ],
)
def test_logit_lens_wrong_answers_fail_with_a_helpful_message(wrong, message):
    assert re.search(message, failure(ex_logit_lens, wrong))


def ablate_ok(tokens, drop, means, num_prefix_tokens=1):
    P = num_prefix_tokens
    gone = torch.cat([torch.zeros(len(drop), P, dtype=torch.bool), drop], 1)[..., None]
    return torch.where(gone, means, tokens)


def ablate_loop(tokens, drop, means):  # another correct answer, with a copy and a loop
    out = tokens.clone()
    for b, n in drop.nonzero().tolist():
        out[b, 1 + n] = means[1 + n]
    return out


def test_mean_ablate_right_answers_pass():
    assert ex_mean_ablate.check(ablate_ok, quiet=True)
    assert ex_mean_ablate.check(ablate_loop, quiet=True)


def in_place(tokens, drop, means):
    for b, n in drop.nonzero().tolist():
        tokens[b, 1 + n] = means[1 + n]
    return tokens


def with_fill(fill):
    def answer(tokens, drop, means):
        out = tokens.clone()
        for b, n in drop.nonzero().tolist():
            out[b, 1 + n] = fill(means, n)
        return out

    return answer


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda t, d, m: None, "returned None"),
        (in_place, "in place"),
        (with_fill(lambda m, n: 0.0), "zero ablation"),
        (with_fill(lambda m, n: m.mean(0)), "one mean over all positions"),
        (with_fill(lambda m, n: m[n]), "not the tokens with each dropped patch"),
        (lambda t, d, m: ablate_ok(t, ~d, m), "invert your condition"),
        (lambda t, d, m: torch.where(d[..., None], m[1:], t[:, 1:]), "expected the tokens'"),
        (lambda t, d, m: torch.where(d[..., None], m[:-1], t[:, :-1]), "expected the tokens'"),
        (lambda t, d, m: ablate_ok(t, d, m).index_fill(1, torch.tensor([0]), 0.0), "CLS token"),
        (lambda t, d, m: t[d], "raised IndexError"),
    ],
)
def test_mean_ablate_wrong_answers_fail_with_a_helpful_message(wrong, message):
    assert re.search(message, failure(ex_mean_ablate, wrong))


def test_off_by_one_slip_is_named():
    def shifted(tokens, drop, means):
        gone = torch.cat([drop, torch.zeros(len(drop), 1, dtype=torch.bool)], 1)[..., None]
        return torch.where(gone, means, tokens)

    assert "off by one" in failure(ex_mean_ablate, shifted)
