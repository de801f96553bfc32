"""The exercises of notebook 05_layers_and_explanations: the logit lens; mean ablation of patch
tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import VisionTransformer
from .core import CheckFailed, Exercise, expect, name_the_slip


def _check_logit_lens(lens) -> None:
    torch.manual_seed(5)
    model = VisionTransformer(embed_dim=16, depth=2, num_heads=2).eval()
    with torch.no_grad():  # big weights in the final norm, so forgetting it shows
        model.norm.weight.uniform_(0.5, 3.0)
        model.norm.bias.uniform_(-1.0, 1.0)
    g = torch.Generator().manual_seed(5)
    states = 4.0 * torch.randn(7, 16, generator=g) + 2.0  # (B, D): far from normalized
    with torch.no_grad():
        try:
            got = lens(model, states.clone())
        except Exception as e:
            raise CheckFailed(
                f"your function raised {type(e).__name__}: {e}. Apply model.norm, then "
                "model.head, to the states."
            ) from None
        expect(got is not None, "your function returned None: `return` the logits.")
        expect(isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}.")
        expect(
            got.shape == (7, 6),
            f"for states (B, D) = (7, 16) expected logits (B, classes) = (7, 6), got "
            f"{tuple(got.shape)}.",
        )
        want = model.head(model.norm(states))
        normed = F.layer_norm(states, (16,), eps=1e-6)
        name_the_slip(
            got,
            {
                "you skipped the final LayerNorm: the head was trained on model.norm(x), not on "
                "the raw residual stream, whose scale grows with depth.": model.head(states),
                "you applied the norm without its learned scale and shift (F.layer_norm): use "
                "the model's own model.norm module.": model.head(normed),
                "you returned probabilities (softmax); the lens gives logits, as the model's "
                "output does: leave out the softmax.": want.softmax(-1),
                "you returned the predicted class (argmax) broadcast, not the logits.": (
                    want.argmax(-1, keepdim=True).float().expand_as(want)
                ),
            },
        )
        expect(
            torch.allclose(got, want, atol=1e-5),
            "the shape is right but the values are not model.head(model.norm(states)).",
        )
        # on the CLS state after the last block the lens is the model itself
        x = torch.rand(3, 3, 32, 32, generator=g)
        h = model.embed(x)
        for block in model.blocks:
            h = block(h)
        expect(
            torch.allclose(lens(model, h[:, 0]), model(x), atol=1e-5),
            "on the CLS token after the last block your lens should give the model's logits.",
        )


ex_logit_lens = Exercise(
    name="ex_logit_lens",
    checker=_check_logit_lens,
    hints=(
        "The model's output is head(norm(z)) with z the CLS token after the last block. The "
        "lens asks the same question of any other state: what would the head say now?",
        "Two modules of the model, in order: model.norm (the final LayerNorm, with its "
        "learned scale and shift), then model.head (a Linear). No softmax.",
    ),
    solution_text="""```python
def lens(model, states):
    return model.head(model.norm(states))  # (..., D) -> (..., classes)
```""",
)


def _check_mean_ablate(mean_ablate) -> None:
    g = torch.Generator().manual_seed(55)
    B, P, N, D = 3, 1, 9, 4  # CLS + a 3x3 grid of patches
    tokens = torch.randn(B, P + N, D, generator=g) + 3.0
    means = torch.randn(P + N, D, generator=g)  # (T, D): one mean per position
    drop = torch.rand(B, N, generator=g) < 0.4  # (B, N): which patches to remove
    drop[0, 0], drop[1, -1] = True, False  # some edge cases surely in
    original = tokens.clone()
    try:
        got = mean_ablate(tokens, drop.clone(), means.clone())
    except Exception as e:
        raise CheckFailed(
            f"your function raised {type(e).__name__}: {e}. Patch n is token P + n: "
            "tokens[:, P:] lines up with drop."
        ) from None
    expect(got is not None, "your function returned None: `return` the new tokens.")
    expect(isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}.")
    expect(
        torch.equal(tokens, original),
        "your function changed the tokens it was given (in place): work on a copy "
        "(tokens.clone(), or torch.where), so the caller's tokens stay intact.",
    )
    expect(
        got.shape == tokens.shape,
        f"expected the tokens' shape {tuple(tokens.shape)}, got {tuple(got.shape)}.",
    )
    full = torch.cat([torch.zeros(B, P, dtype=torch.bool), drop], 1)[..., None]  # (B, T, 1)
    want = torch.where(full, means, tokens)
    shifted = torch.cat([drop, torch.zeros(B, P, dtype=torch.bool)], 1)[..., None]
    name_the_slip(
        got,
        {
            "you replaced the dropped patches by zeros: that is zero ablation, which also "
            "erases the position embedding. Use the position's mean token.": torch.where(
                full, torch.zeros(()), tokens
            ),
            "you replaced every dropped patch by one mean over all positions: use the mean "
            "of the patch's own position, means[P + n].": torch.where(full, means.mean(0), tokens),
            "your mask is off by one token: drop[:, n] is patch n, which is token P + n "
            "(the CLS token comes first).": torch.where(shifted, means, tokens),
            "you replaced the patches that should stay and kept the dropped ones: invert "
            "your condition.": torch.where(
                torch.cat([torch.zeros(B, P, dtype=torch.bool), ~drop], 1)[..., None],
                means,
                tokens,
            ),
        },
    )
    expect(
        torch.equal(got[:, :P], tokens[:, :P]),
        "the CLS token (token 0) must never be replaced: only patch tokens are ablated.",
    )
    expect(
        torch.allclose(got, want),
        "the shape is right, but the values are not the tokens with each dropped patch "
        "replaced by its position's mean.",
    )


ex_mean_ablate = Exercise(
    name="ex_mean_ablate",
    checker=_check_mean_ablate,
    hints=(
        "Mean ablation keeps everything a position always has (its position embedding, the "
        "average content there) and removes only what this image put there.",
        "Build a bool (B, T, 1) mask that is False for the P prefix tokens and drop[b, n] for "
        "token P + n; then torch.where(mask, means, tokens) broadcasts means (T, D) over B.",
    ),
    solution_text="""```python
def mean_ablate(tokens, drop, means, num_prefix_tokens=1):
    P = num_prefix_tokens
    keep_prefix = torch.zeros(len(drop), P, dtype=torch.bool)
    gone = torch.cat([keep_prefix, drop], dim=1)[..., None]  # (B, T, 1)
    return torch.where(gone, means, tokens)  # a new tensor: tokens stay as they were
```""",
)
