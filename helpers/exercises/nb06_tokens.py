"""The exercises of notebook 06_distillation_and_registers: the two-token prefix of DeiT; the vote
of every patch without a summary token.
"""

from __future__ import annotations

import torch

from ..studies.distill import DistilledViT
from ..studies.tokens import PatchClassifierViT
from .core import CheckFailed, Exercise, call_for_tensor, expect, name_the_slip


def _check_two_token_prefix(two_token_prefix) -> None:

    g = torch.Generator().manual_seed(6)
    B, N, D = 3, 4, 8
    cls = torch.randn(1, 1, D, generator=g)
    dist = torch.randn(1, 1, D, generator=g)
    patches = torch.randn(B, N, D, generator=g)
    pos = torch.randn(1, 2 + N, D, generator=g)
    out = call_for_tensor(
        two_token_prefix,
        patches.clone(),
        cls.clone(),
        dist.clone(),
        pos.clone(),
        torch_hint=(
            "Expand each token to (B, 1, D) with .expand(B, -1, -1), join "
            "[CLS, DIST, patches] along dim=1, then add the whole (1, 2 + N, D) pos_embed."
        ),
        if_none="build the sequence and `return` it.",
    )
    c, d = cls.expand(B, -1, -1), dist.expand(B, -1, -1)
    right = torch.cat([c, d, patches], dim=1) + pos
    if out.shape != right.shape:
        if out.shape == (B, 1 + N, D):
            raise CheckFailed(
                f"the output has {1 + N} tokens, one short of 2 + N = {2 + N}: both the CLS "
                "and the distillation token go in front of the patches."
            )
        raise CheckFailed(
            f"for B={B}, N={N}, D={D} expected shape (B, 2 + N, D) = {tuple(right.shape)}, "
            f"got {tuple(out.shape)}: join along dim=1, the token axis."
        )
    name_the_slip(
        out,
        {
            "the two tokens are swapped: CLS comes first (index 0, read by `head`), the "
            "distillation token second (index 1, read by `head_dist`).": torch.cat(
                [d, c, patches], dim=1
            )
            + pos,
            "no position embedding was added: add pos_embed (1, 2 + N, D) to the whole "
            "sequence, so each of the two tokens gets its own slot.": torch.cat(
                [c, d, patches], dim=1
            ),
            "the position table went to the patches only (pos_embed[:, 2:]), and the two "
            "prefix slots were never used: in DeiT each prefix token has its own learned slot; "
            "add the whole table after joining.": torch.cat([c, d, patches + pos[:, 2:]], dim=1),
            "both prefix tokens got the same slot: slot 0 is CLS's, slot 1 is DIST's; add the "
            "whole table after joining.": torch.cat(
                [c + pos[:, :1], d + pos[:, :1], patches + pos[:, 2:]], dim=1
            ),
        },
    )
    expect(
        torch.allclose(out, right, atol=1e-6),
        "the values are not [CLS, DIST, patches] + pos_embed: check the order of the tokens "
        "and that the whole position table is added once.",
    )
    # the model's own embed must agree with the same recipe
    torch.manual_seed(0)
    model = DistilledViT(embed_dim=D, depth=1, num_heads=2, img_size=8, patch_size=4).eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        mine = two_token_prefix(
            model.patch_embed(x), model.cls_token, model.dist_token, model.pos_embed
        )
        expect(
            torch.allclose(mine, model.embed(x), atol=1e-6),
            "on a real DistilledViT your prefix differs from model.embed(x).",
        )


ex_two_token_prefix = Exercise(
    name="ex_two_token_prefix",
    checker=_check_two_token_prefix,
    hints=(
        (
            "DeiT's sequence is [CLS] [DIST] [patch 1] ... [patch N], and pos_embed has one row "
            "per token, 2 + N rows: slot 0 for CLS, slot 1 for DIST."
        ),
        (
            "B = patch_tokens.shape[0]; expand both tokens to (B, 1, D), torch.cat the three "
            "pieces along dim=1, then add pos_embed (it broadcasts over the batch)."
        ),
    ),
    solution_text="""```python
def two_token_prefix(patch_tokens, cls_token, dist_token, pos_embed):
    B = patch_tokens.shape[0]
    cls = cls_token.expand(B, -1, -1)  # (B, 1, D)
    dist = dist_token.expand(B, -1, -1)  # (B, 1, D)
    x = torch.cat([cls, dist, patch_tokens], dim=1)  # (B, 2 + N, D)
    return x + pos_embed  # slot 0: CLS, slot 1: DIST, then the patches
```""",
)


def _check_patch_vote(patch_vote) -> None:

    torch.manual_seed(0)
    model = PatchClassifierViT(embed_dim=8, depth=1, num_heads=2, class_token=True).eval()
    P = model.cfg.num_prefix_tokens
    g = torch.Generator().manual_seed(7)
    tokens = 3 * torch.randn(4, P + 64, 8, generator=g)
    with torch.no_grad():
        out = call_for_tensor(
            patch_vote,
            tokens.clone(),
            P,
            model.fc_norm,
            model.head,
            torch_hint=(
                "Keep the patch tokens (B, N, D), normalize them, apply the "
                "head to all of them at once (B, N, C), then average over the patches."
            ),
            if_none="`return` the averaged logits.",
        )
    with torch.no_grad():
        norm, head = model.fc_norm, model.head
        per_patch = head(norm(tokens[:, P:]))  # (B, N, C)
        right = per_patch.mean(1)
        if out.shape == per_patch.shape:
            raise CheckFailed(
                f"you returned one prediction per patch, shape {tuple(out.shape)}: average "
                "them over the patches (dim=1) to get one (B, classes) row per image."
            )
        expect(
            out.shape == right.shape,
            f"expected logits of shape (B, classes) = {tuple(right.shape)}, got "
            f"{tuple(out.shape)}.",
        )
        name_the_slip(
            out,
            {
                "the prefix (CLS) token voted too: keep only tokens[:, num_prefix_tokens:], "
                "the patches.": head(norm(tokens)).mean(1),
                "you averaged probabilities (softmax), not logits: average the logits, as the "
                "model does (a mean of logits is also the head on the mean of the normalized "
                "tokens).": per_patch.softmax(-1).mean(1),
                "the LayerNorm was skipped: normalize each patch token with `norm` before the "
                "head.": head(tokens[:, P:]).mean(1),
                "you averaged the raw tokens first and normalized the mean: that is average "
                "pooling (GAP), not a vote of the patches; normalize every patch token, then "
                "classify it, then average.": head(norm(tokens[:, P:].mean(1))),
            },
        )
        expect(
            torch.allclose(out, right, atol=1e-5),
            "your logits are not the mean over the patches of head(norm(patch token)).",
        )
        x = torch.rand(2, 3, 32, 32)
        feats = model.forward_features(x)
        expect(
            torch.allclose(patch_vote(feats, P, norm, head), model(x), atol=1e-5),
            "on a real PatchClassifierViT your vote differs from the model's logits.",
        )


ex_patch_vote = Exercise(
    name="ex_patch_vote",
    checker=_check_patch_vote,
    hints=(
        (
            "Every patch token is classified by the same head, as if it were a CLS token; "
            "the image's logits are the mean of the patches' logits."
        ),
        (
            "patches = tokens[:, num_prefix_tokens:] is (B, N, D); norm and head are applied "
            "to the last dimension, so head(norm(patches)) is (B, N, classes); .mean(dim=1)."
        ),
    ),
    solution_text="""```python
def patch_vote(tokens, num_prefix_tokens, norm, head):
    patches = tokens[:, num_prefix_tokens:]  # (B, N, D): the prefix does not vote
    per_patch = head(norm(patches))  # (B, N, classes): one prediction per patch
    return per_patch.mean(dim=1)  # (B, classes): the mean of the logits
```""",
)
