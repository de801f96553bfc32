"""The 08_best_practices exercise checks: right answers pass, common slips get a helpful
message."""

import re

import pytest
import torch

from helpers.exercises.nb08_practices import ex_cls_mean_features, ex_cls_param_groups
from tests.conftest import failure


def groups_ok(model, lr, factor):
    rest = [p for n, p in model.named_parameters() if n != "cls_token"]
    return [{"params": [model.cls_token], "lr": lr * factor}, {"params": rest, "lr": lr}]


def test_cls_param_groups_right_answers_pass():
    assert ex_cls_param_groups.check(groups_ok, quiet=True)

    def base_lr_by_default(model, lr, factor):  # the rest takes the optimizer's default lr
        rest = [p for n, p in model.named_parameters() if n != "cls_token"]
        return [{"params": rest}, {"params": [model.cls_token], "lr": lr * factor}]

    assert ex_cls_param_groups.check(base_lr_by_default, quiet=True)


def everything(model):
    return list(model.parameters())


def without_cls(model):
    return [p for n, p in model.named_parameters() if n != "cls_token"]


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda m, lr, f: None, "returned None"),
        (lambda m, lr, f: m.parameters(), "list of dicts"),
        (
            lambda m, lr, f: [{"params": [m.cls_token], "lr": lr * f}, {"params": everything(m)}],
            "two groups",
        ),
        (lambda m, lr, f: [{"params": [m.cls_token], "lr": lr * f}], "in no group"),
        (
            lambda m, lr, f: [{"params": [m.cls_token], "lr": lr / f}, {"params": without_cls(m)}],
            "lr / factor",
        ),
        (
            lambda m, lr, f: [{"params": [m.cls_token]}, {"params": without_cls(m)}],
            "base rate",
        ),
        (
            lambda m, lr, f: [
                {"params": [m.cls_token], "lr": lr * f},
                {"params": without_cls(m), "lr": lr * f},
            ],
            "only\\s+the CLS token gets the factor",
        ),
        (
            lambda m, lr, f: [
                {"params": [m.cls_token, m.pos_embed], "lr": lr * f},
                {
                    "params": [
                        p for n, p in m.named_parameters() if n not in ("cls_token", "pos_embed")
                    ]
                },
            ],
            "a group of its own",
        ),
    ],
)
def test_cls_param_groups_slips_are_named(wrong, message):
    assert re.search(message, failure(ex_cls_param_groups, wrong))


def features_ok(tokens, num_prefix_tokens):
    return torch.cat([tokens[:, 0], tokens[:, num_prefix_tokens:].mean(1)], dim=1)


def test_cls_mean_features_right_answer_passes():
    assert ex_cls_mean_features.check(features_ok, quiet=True)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda t, n: None, "returned None"),
        (lambda t, n: torch.cat([t[:, 0], t.mean(1)], 1), "includes the prefix"),
        (lambda t, n: torch.cat([t[:, 0], t[:, 1:].mean(1)], 1), "registers are prefix"),
        (lambda t, n: torch.cat([t[:, n:].mean(1), t[:, 0]], 1), "CLS token first"),
        (lambda t, n: torch.cat([t[:, -1], t[:, n:].mean(1)], 1), "last token"),
        (lambda t, n: torch.cat([t[:, 0], t[:, n:].mean(1)], 0), "dim=1"),
        (lambda t, n: t[:, 0], "expected \\(B, 2D\\)"),
        (lambda t, n: torch.cat([t[:, 0], t[:, n:].max(1).values], 1), "not \\[CLS, mean"),
    ],
)
def test_cls_mean_features_slips_are_named(wrong, message):
    assert re.search(message, failure(ex_cls_mean_features, wrong))
