"""The exercises of notebook 04_classification: average pooling of the patch tokens; the parameters
that dropping the CLS token saves.
"""

from __future__ import annotations

import torch

from ..model import VisionTransformer, count_parameters
from .core import CheckFailed, Exercise, expect


def _check_gap_pool(gap_pool) -> None:

    g = torch.Generator().manual_seed(4)
    B, prefix, N, D = 3, 3, 16, 8  # CLS + 2 registers, then a 4x4 grid of patches
    tokens = torch.randn(B, prefix + N, D, generator=g)
    tokens[:, :prefix] += 5.0  # prefix tokens far from the patches: including them shows
    try:
        out = gap_pool(tokens.clone(), prefix)
    except Exception as e:
        raise CheckFailed(
            f"your function raised {type(e).__name__}: {e}. Slice off the prefix tokens "
            "along the token axis, tokens[:, num_prefix_tokens:], then take .mean(dim=1)."
        ) from None
    expect(out is not None, "your function returned None: compute the mean and `return` it.")
    expect(isinstance(out, torch.Tensor), f"expected a tensor, got {type(out).__name__}.")
    T = prefix + N
    if out.shape == (B, T) or out.shape == (B, N):
        raise CheckFailed(
            f"your output has shape {tuple(out.shape)}: you averaged over the width D "
            "(dim=-1 or dim=2). Average over the token axis, dim=1, to keep one D-vector "
            "per image."
        )
    if out.shape in ((T, D), (N, D)):
        raise CheckFailed(
            f"your output has shape {tuple(out.shape)}: you averaged over the batch (dim=0), "
            "mixing different images. Average over the token axis, dim=1."
        )
    if out.shape == (B, 1, D):
        raise CheckFailed("drop keepdim=True: the head expects one (B, D) vector per batch.")
    expect(
        out.shape == (B, D),
        f"for tokens of shape (B, T, D) = {tuple(tokens.shape)} expected (B, D) = {(B, D)}, "
        f"got {tuple(out.shape)}.",
    )
    want = tokens[:, prefix:].mean(1)
    if torch.allclose(out, tokens.mean(1), atol=1e-5):
        raise CheckFailed(
            "you averaged over all tokens, the CLS token (and registers) too. GAP pools the "
            "patch tokens only: skip the first num_prefix_tokens tokens."
        )
    if torch.allclose(out, tokens[:, 1:].mean(1), atol=1e-5):
        raise CheckFailed(
            "you skipped only the CLS token (tokens[:, 1:]), but this model also has "
            f"{prefix - 1} register tokens: skip num_prefix_tokens, not 1."
        )
    if torch.allclose(out, tokens[:, prefix:].sum(1), atol=1e-4):
        raise CheckFailed("you summed the patch tokens: take the mean (divide by N).")
    expect(
        torch.allclose(out, want, atol=1e-5),
        "the shape is right but the values are not the mean of the patch tokens "
        "tokens[:, num_prefix_tokens:] over dim=1.",
    )
    expect(
        torch.allclose(gap_pool(tokens.clone(), 0), tokens.mean(1), atol=1e-5),
        "with num_prefix_tokens=0 (a model without a CLS token) every token is a patch: "
        "the answer should be tokens.mean(1). Check your slice when num_prefix_tokens is 0.",
    )
    # the model's own head, fed with your pooling, must give the model's logits
    torch.manual_seed(0)
    model = VisionTransformer(
        embed_dim=D, depth=1, num_heads=2, global_pool="avg", reg_tokens=prefix - 1
    ).eval()
    with torch.no_grad():
        mine = model.head(model.fc_norm(gap_pool(tokens.clone(), prefix)))
        expect(
            torch.allclose(mine, model.forward_head(tokens), atol=1e-5),
            "your pooling does not reproduce the model's forward_head logits.",
        )


ex_gap_pool = Exercise(
    name="ex_gap_pool",
    checker=_check_gap_pool,
    hints=(
        (
            "GAP averages the patch tokens only: the prefix tokens (CLS, registers) come first in "
            "the sequence and must not enter the mean."
        ),
        (
            "Slice the prefix tokens off along the token axis (dim 1), then take the mean over that"
            " same axis, so that one (B, D) vector per image remains."
        ),
    ),
    solution_text="""```python
def gap_pool(tokens, num_prefix_tokens):
    patches = tokens[:, num_prefix_tokens:]  # (B, N, D): the CLS token never enters
    return patches.mean(dim=1)  # (B, D): one vector per image
```""",
)


def _saved_parameters_truth(dim: int, pos_embed: str) -> int:

    kw = dict(embed_dim=dim, depth=1, num_heads=2, global_pool="avg", pos_embed=pos_embed)
    with_cls = count_parameters(VisionTransformer(class_token=True, **kw))
    return with_cls - count_parameters(VisionTransformer(class_token=False, **kw))


def _check_saved_parameters(saved_parameters) -> None:
    cases = [(d, pe) for d in (8, 16, 32) for pe in ("learn", "sincos", "none")]
    for dim, pe in cases:
        try:
            got = saved_parameters(dim, pe)
        except Exception as e:
            raise CheckFailed(
                f"saved_parameters({dim}, {pe!r}) raised {type(e).__name__}: {e}."
            ) from None
        expect(got is not None, "your function returned None: `return` a number.")
        truth = _saved_parameters_truth(dim, pe)
        if got == truth:
            continue
        if pe == "learn" and got == dim:
            raise CheckFailed(
                f"for dim={dim} with learned position embeddings you said {got}: the token "
                "itself is D numbers, but it also has its own row in pos_embed (slot 0), "
                "another D learned numbers that go away with it."
            )
        if pe == "sincos" and got == 2 * dim:
            raise CheckFailed(
                f"for dim={dim} with 'sincos' you said {got}: a sine-cosine table is fixed, a "
                "buffer, not a parameter, so only the token's own D numbers are saved."
            )
        if pe == "none" and got == 2 * dim:
            raise CheckFailed(
                f"for dim={dim} with pos_embed='none' there is no position table at all: "
                "only the token's D numbers are saved."
            )
        raise CheckFailed(
            f"saved_parameters({dim}, {pe!r}) returned {got}, but the models differ by "
            f"{truth} parameters. Which tensors have a row for the CLS token, and which of "
            "them are learned?"
        )


ex_saved_parameters = Exercise(
    name="ex_saved_parameters",
    checker=_check_saved_parameters,
    hints=(
        (
            "Dropping the CLS token removes every learned number that exists only for it: which "
            "tensors have a place for the CLS token?"
        ),
        (
            "Count D for the token itself; then ask, for each `pos_embed` kind, whether the "
            "position table has a learned row for the CLS slot (a 'sincos' table is a fixed buffer,"
            " 'none' has no table)."
        ),
    ),
    solution_text="""```python
def saved_parameters(dim, pos_embed):
    token = dim  # cls_token: (1, 1, D)
    slot = dim if pos_embed == "learn" else 0  # its row of a learned pos_embed
    return token + slot
```""",
)
