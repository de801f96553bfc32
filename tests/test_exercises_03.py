"""The 03_attention exercise checks: right answers pass, common slips get a helpful message."""

import math
import re

import pytest
import torch

from helpers.attention import patch_mask
from helpers.exercises.nb03_attention import ex_attention, ex_object_mask
from tests.conftest import failure


def attention_ok(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def _scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda q, k, v, m: None, "returned None"),
        (
            lambda q, k, v, m: (q @ k.transpose(-2, -1)).masked_fill(~m, -math.inf).softmax(-1) @ v,
            "scale is missing",
        ),
        (
            lambda q, k, v, m: (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(-1) @ v,
            "divided by d",
        ),
        (
            lambda q, k, v, m: (q @ k.transpose(-2, -1) / math.sqrt(v.shape[-1])).softmax(-1) @ v,
            "width of v",
        ),
        (lambda q, k, v, m: _scores(q, k).softmax(-2) @ v, "wrong axis"),
        (lambda q, k, v, m: _scores(q, k) @ v, "softmax is missing"),
        (
            lambda q, k, v, m: (q.transpose(-2, -1) @ k / math.sqrt(q.shape[-1])).softmax(-1) @ v,
            "Transpose k, not q",
        ),
        (lambda q, k, v, m: _scores(q, k).softmax(-1), "attention weights"),
        (lambda q, k, v, m: (attention_ok(q, k, v, m), None), "not a tuple"),
        (lambda q, k, v, m: attention_ok(q, k, v, m) * 1.01, "nothing masked, the output differs"),
        (lambda q, k, v, m: _scores(q, k).softmax(-1) @ v, "mask is ignored"),
        (lambda q, k, v, m: _scores(q, k).masked_fill(~m, 0.0).softmax(-1) @ v, "score of 0"),
        (lambda q, k, v, m: (_scores(q, k).softmax(-1) * m) @ v, "after the softmax"),
        (
            lambda q, k, v, m: _scores(q, k).masked_fill(m, -math.inf).softmax(-1) @ v,
            "invert the mask",
        ),
        (
            lambda q, k, v, m: _scores(q, k).masked_fill(~m, -1.0).softmax(-1) @ v,
            "with a mask, the output differs",
        ),
    ],
)
def test_masked_attention_slips(wrong, message):
    assert ex_attention.check(attention_ok, quiet=True)
    assert re.search(message, failure(ex_attention, wrong))


def test_masked_attention_accepts_builtin_and_placeholder(capsys):
    def sdpa(q, k, v, mask):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    assert ex_attention.check(sdpa)
    assert "Correct" in capsys.readouterr().out
    assert not ex_attention.check(lambda q, k, v, mask: ...)  # the notebook's placeholder
    assert "Not yet" in capsys.readouterr().out


def object_mask_ok(masks, patch_size=4):
    on = (patch_mask(masks, patch_size) > 0).flatten(1)
    B, N = on.shape
    mask = torch.ones(B, 1, N + 1, N + 1, dtype=torch.bool)
    mask[:, 0, 0, 1:] = on
    return mask


def test_object_mask_correct_and_placeholder():
    assert ex_object_mask.check(object_mask_ok, quiet=True)
    assert not ex_object_mask.check(lambda masks: None, quiet=True)


def _cls_col(masks):
    return object_mask_ok(masks).transpose(-2, -1)


def _no_head_axis(masks):
    return object_mask_ok(masks)[:, 0]


def _no_self(masks):
    m = object_mask_ok(masks)
    m[:, 0, 0, 0] = False
    return m


def _swapped_grid(masks):
    m = object_mask_ok(masks)
    on = (patch_mask(masks, 4) > 0).transpose(-2, -1).flatten(1)
    m[:, 0, 0, 1:] = on
    return m


def _half_covered(masks):
    m = object_mask_ok(masks)
    m[:, 0, 0, 1:] = (patch_mask(masks, 4) >= 0.5).flatten(1)
    return m


def _patch_rows_changed(masks):
    m = object_mask_ok(masks)
    m[:, 0, 1:, 0] = False
    return m


def _off_by_one(masks):
    m = object_mask_ok(masks)
    m[:, 0, 0, 1:] = torch.roll(m[:, 0, 0, 1:], 1, dims=-1)
    return m


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda masks: object_mask_ok(masks).float(), "must be bool"),
        (_no_head_axis, "heads axis"),
        (lambda masks: ~object_mask_ok(masks), "inverted"),
        (_cls_col, "column 0"),
        (_patch_rows_changed, "only the CLS row"),
        (_no_self, "keep attending to itself"),
        (_swapped_grid, "swapped"),
        (_half_covered, "any of its pixels"),
        (_off_by_one, "is wrong on"),
        (lambda masks: torch.ones(3, 1, 64, 64, dtype=torch.bool), "expected shape"),
    ],
)
def test_object_mask_slips(wrong, message):
    assert not ex_object_mask.check(wrong, quiet=True)
    assert re.search(message, failure(ex_object_mask, wrong))
