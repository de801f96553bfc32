"""The 06_distillation_and_registers exercise checks: right answers pass, common slips get a
helpful message."""

import re

import pytest
import torch

from helpers.exercises.nb06_tokens import ex_patch_vote, ex_two_token_prefix
from tests.conftest import failure


def prefix_ok(patch_tokens, cls_token, dist_token, pos_embed):
    B = patch_tokens.shape[0]
    x = torch.cat([cls_token.expand(B, -1, -1), dist_token.expand(B, -1, -1), patch_tokens], 1)
    return x + pos_embed


def test_two_token_prefix_right_answer_passes():
    assert ex_two_token_prefix.check(prefix_ok, quiet=True)


def _swapped(p, c, d, pos):
    return prefix_ok(p, d, c, pos)


def _no_pos(p, c, d, pos):
    return prefix_ok(p, c, d, torch.zeros_like(pos))


def _patches_only(p, c, d, pos):
    B = p.shape[0]
    return torch.cat([c.expand(B, -1, -1), d.expand(B, -1, -1), p + pos[:, 2:]], 1)


def _same_slot(p, c, d, pos):
    B = p.shape[0]
    pre = [c.expand(B, -1, -1) + pos[:, :1], d.expand(B, -1, -1) + pos[:, :1]]
    return torch.cat(pre + [p + pos[:, 2:]], 1)


def _cls_only(p, c, d, pos):
    B = p.shape[0]
    return torch.cat([c.expand(B, -1, -1), p], 1) + pos[:, 1:]


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda p, c, d, pos: None, "returned None"),
        (_swapped, "swapped"),
        (_no_pos, "no position embedding"),
        (_patches_only, "patches only"),
        (_same_slot, "same slot"),
        (_cls_only, "one short"),
        (lambda p, c, d, pos: torch.cat([c, d, p], 1) + pos, "torch raised"),  # no expand
        (lambda p, c, d, pos: prefix_ok(p, c, d, pos) * 1.01, "not \\[CLS, DIST"),
    ],
)
def test_two_token_prefix_slips_fail_with_a_helpful_message(wrong, message):
    assert re.search(message, failure(ex_two_token_prefix, wrong))


def vote_ok(tokens, num_prefix_tokens, norm, head):
    return head(norm(tokens[:, num_prefix_tokens:])).mean(dim=1)


def test_patch_vote_right_answers_pass():
    assert ex_patch_vote.check(vote_ok, quiet=True)

    def linear_equivalent(tokens, n, norm, head):  # the head on the mean of normalized tokens
        return head(norm(tokens[:, n:]).mean(1))

    assert ex_patch_vote.check(linear_equivalent, quiet=True)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda t, n, norm, head: None, "returned None"),
        (lambda t, n, norm, head: head(norm(t)).mean(1), "prefix \\(CLS\\) token voted"),
        (lambda t, n, norm, head: head(norm(t[:, n:])).softmax(-1).mean(1), "probabilities"),
        (lambda t, n, norm, head: head(t[:, n:]).mean(1), "LayerNorm was skipped"),
        (lambda t, n, norm, head: head(norm(t[:, n:].mean(1))), "average pooling"),
        (lambda t, n, norm, head: head(norm(t[:, n:])), "one prediction per patch"),
        (lambda t, n, norm, head: head(norm(t[:, n:])).mean(0), "expected logits of shape"),
        (lambda t, n, norm, head: head(norm(t[:, n:])).max(1).values, "not the mean"),
    ],
)
def test_patch_vote_slips_fail_with_a_helpful_message(wrong, message):
    assert re.search(message, failure(ex_patch_vote, wrong))


def test_placeholders_print_not_yet(capsys):
    def placeholder(*args): ...

    assert not ex_two_token_prefix.check(placeholder)
    assert not ex_patch_vote.check(placeholder)
    assert capsys.readouterr().out.count("Not yet") == 2
