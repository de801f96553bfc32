"""The exercises of notebook 08_best_practices: parameter groups that give the CLS token its own
learning rate; CLS and mean features.
"""

from __future__ import annotations

import math

import torch

from ..model import VisionTransformer
from .core import Exercise, expect, name_the_slip


def _check_cls_param_groups(cls_param_groups):
    model = VisionTransformer(embed_dim=16, depth=1, num_heads=2)
    lr, factor = 1e-3, 10.0
    groups = cls_param_groups(model, lr, factor)
    expect(groups is not None, "your function returned None: return a list of dicts.")
    expect(
        isinstance(groups, (list, tuple)) and all(isinstance(g, dict) for g in groups),
        "return a list of dicts, each {'params': [...], 'lr': ...}, as torch.optim takes them.",
    )
    seen = {}
    for g in groups:
        expect("params" in g, "every group needs its 'params' (a list of parameters).")
        params = list(g["params"])
        g["params"] = params
        for p in params:
            seen[id(p)] = seen.get(id(p), 0) + 1
    expect(
        all(n == 1 for n in seen.values()),
        "a parameter is in two groups (the CLS token both in its own group and among the "
        "rest?): torch.optim refuses that; leave cls_token out of the other group.",
    )
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    expect(
        not missing,
        f"these parameters are in no group, so they would never train: {missing[:3]}: put "
        "every parameter except cls_token in the base-rate group.",
    )
    lr_of = {names[id(p)]: g.get("lr", lr) for g in groups for p in g["params"]}
    cls_group = next(g for g in groups if any(p is model.cls_token for p in g["params"]))
    expect(
        len(cls_group["params"]) == 1,
        "the CLS token's group holds other parameters too: give cls_token a group of its own.",
    )
    got = lr_of["cls_token"]
    expect(got != lr, "the CLS token's group has the base rate: set its 'lr' to lr * factor.")
    expect(
        not math.isclose(got, lr / factor),
        "the CLS token's rate is lr / factor: multiply, so that factor 10 means ten times faster.",
    )
    expect(math.isclose(got, lr * factor), f"the CLS token's rate is {got:g}, not lr * factor.")
    others = {v for n, v in lr_of.items() if n != "cls_token"}
    expect(
        others == {lr},
        f"the other parameters learn at {sorted(others)}, not the base rate lr = {lr:g}: only "
        "the CLS token gets the factor.",
    )
    opt = torch.optim.AdamW(groups, lr=lr)  # torch accepts the groups
    before = model.cls_token.detach().clone()
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    expect(not torch.equal(before, model.cls_token), "an optimizer step left the CLS token alone.")


ex_cls_param_groups = Exercise(
    name="ex_cls_param_groups",
    checker=_check_cls_param_groups,
    hints=(
        (
            "torch.optim takes a list of groups, each a dict with its 'params' and, if it "
            "differs from the optimizer's default, its own 'lr'. A parameter may be in one "
            "group only."
        ),
        (
            "Make two groups: [model.cls_token] with lr * factor, and every other parameter "
            "of model.named_parameters() (skip the one named 'cls_token') with lr."
        ),
    ),
    solution_text="""```python
def cls_param_groups(model, lr, factor):
    rest = [p for name, p in model.named_parameters() if name != "cls_token"]
    return [
        {"params": [model.cls_token], "lr": lr * factor},  # the CLS token, faster or slower
        {"params": rest, "lr": lr},  # everything else at the base rate
    ]
```
(`helpers.train.train(..., lr_scale={"cls_token": 10.0})` does this for you, and can also
scale one slot of `pos_embed`.)""",
)


def _check_cls_mean_features(cls_mean_features):
    torch.manual_seed(0)
    B, P, N, D = 3, 2, 5, 4
    tokens = torch.randn(B, P + N, D)
    out = cls_mean_features(tokens, P)
    expect(out is not None, "your function returned None: return a (B, 2D) tensor.")
    expect(isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}.")
    right = torch.cat([tokens[:, 0], tokens[:, P:].mean(1)], dim=1)
    name_the_slip(
        out,
        {
            "the mean includes the prefix tokens (CLS, registers): average tokens[:, "
            "num_prefix_tokens:] only.": torch.cat([tokens[:, 0], tokens.mean(1)], 1),
            "you skipped only the CLS token, but the registers are prefix tokens too: the "
            "patches start at num_prefix_tokens, not 1.": torch.cat(
                [tokens[:, 0], tokens[:, 1:].mean(1)], 1
            ),
            "mean first, CLS second: put the CLS token first, as DINOv2 does.": torch.cat(
                [tokens[:, P:].mean(1), tokens[:, 0]], 1
            ),
            "you used the last token, not the CLS token (index 0).": torch.cat(
                [tokens[:, -1], tokens[:, P:].mean(1)], 1
            ),
        },
    )
    expect(
        out.shape == right.shape,
        f"expected (B, 2D) = {tuple(right.shape)}, got {tuple(out.shape)}: concatenate the two "
        "(B, D) vectors along the feature dimension (dim=1), not the batch (dim=0).",
    )
    expect(torch.allclose(out, right, atol=1e-6), "your features are not [CLS, mean of patches].")


ex_cls_mean_features = Exercise(
    name="ex_cls_mean_features",
    checker=_check_cls_mean_features,
    hints=(
        (
            "Two (B, D) vectors per image side by side: the final CLS token, and the mean of "
            "the patch tokens (no prefix token in the mean)."
        ),
        (
            "tokens[:, 0] is the CLS token; tokens[:, num_prefix_tokens:].mean(dim=1) the mean "
            "of the patches; torch.cat([...], dim=1) puts them side by side."
        ),
    ),
    solution_text="""```python
def cls_mean_features(tokens, num_prefix_tokens):
    cls = tokens[:, 0]  # (B, D)
    mean = tokens[:, num_prefix_tokens:].mean(dim=1)  # (B, D): patches only
    return torch.cat([cls, mean], dim=1)  # (B, 2D)
```""",
)
