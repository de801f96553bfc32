"""The exercises of notebook 03_attention: attention with a mask, written out; the mask that lets
CLS read only the object.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attention import patch_mask
from .core import CheckFailed, Exercise, expect, name_the_slip


def _check_masked_attention(masked_attention) -> None:

    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 3, 5, 16, generator=g)  # (B, heads, T_q, d): 5 queries
    k = torch.randn(2, 3, 7, 16, generator=g)  # 7 keys, a different count on purpose
    v = torch.randn(2, 3, 7, 6, generator=g)  # values may have their own width
    full = torch.ones(5, 7, dtype=torch.bool)
    mask = torch.rand(5, 7, generator=g) < 0.5  # (T_q, T_k), True = may attend
    mask[torch.arange(5), torch.arange(5)] = True  # every query keeps a key
    mask[0, 5:] = False  # and some keys are surely hidden
    mask[1, :] = True  # one row is left whole, so the inverted mask leaves it no key

    def run(m):
        try:
            return masked_attention(q, k, v, m)
        except RuntimeError as e:
            raise CheckFailed(
                f"a matrix product failed ({e}). The scores are q @ k.transpose(-2, -1): "
                "(T_q, d) times (d, T_k) gives (T_q, T_k); then weights @ v gives (T_q, d_v). "
                "Transpose k, not q, and only its last two axes (not .T)."
            ) from None

    out = run(full)  # first without any masking: the plain attention must be right
    expect(out is not None, "your function returned None: compute the output and `return` it.")
    if isinstance(out, tuple):
        raise CheckFailed("return only the output tensor, not a tuple.")
    expect(isinstance(out, torch.Tensor), f"expected a tensor, got {type(out).__name__}.")
    scores = q @ k.transpose(-2, -1)  # (2, 3, 5, 7)
    if out.shape == scores.shape:
        raise CheckFailed(
            f"your output has shape {tuple(out.shape)}, the shape of the attention weights "
            "(T_q, T_k): multiply the weights by v to mix the values."
        )
    want = F.scaled_dot_product_attention(q, k, v)
    expect(
        out.shape == want.shape,
        f"expected shape {tuple(want.shape)} = (..., T_q, d_v), got {tuple(out.shape)}.",
    )
    if out.isnan().any():
        raise CheckFailed(
            "with a mask that allows everything, the output has NaNs: every key was hidden. "
            "Did you invert the mask? True means *may attend*: fill the scores where ~mask."
        )
    d = q.shape[-1]
    if not torch.allclose(out, want, atol=1e-5):
        slips = {
            "the 1/sqrt(d) scale is missing: divide the scores by math.sqrt(d), d = q.shape[-1].": (
                scores.softmax(-1) @ v
            ),
            "you divided by d; the scale is 1/sqrt(d).": (scores / d).softmax(-1) @ v,
            "the scale uses the width of v; use d = q.shape[-1] (the width of queries and keys).": (
                scores / math.sqrt(v.shape[-1])
            ).softmax(-1)
            @ v,
            "the softmax runs over the wrong axis: each query's row of weights must sum to 1, "
            "so take softmax(dim=-1), over the keys.": (scores / math.sqrt(d)).softmax(-2) @ v,
            "the softmax is missing: the weights must be positive and sum to 1 over the keys.": (
                scores / math.sqrt(d)
            )
            @ v,
        }
        name_the_slip(out, slips)
        raise CheckFailed(
            "with nothing masked, the output differs from F.scaled_dot_product_attention "
            f"(largest difference {(out - want).abs().max().item():.3g}). "
            "Recompute softmax(q @ k^T / sqrt(d)) @ v step by step."
        )

    out = run(mask)  # now with keys hidden
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expect(
        isinstance(out, torch.Tensor) and out.shape == want.shape,
        f"with a mask, expected a tensor of shape {tuple(want.shape)} as before.",
    )
    if torch.allclose(out, want, atol=1e-5):
        return
    s = scores / math.sqrt(d)
    if out.isnan().any():
        raise CheckFailed(
            "the output has NaNs: some query was left with no key, so its softmax is 0/0. "
            "Did you invert the mask? True means *may attend*: fill the scores where ~mask."
        )
    slips = {
        "the mask is ignored: set the scores of hidden keys to float('-inf') "
        "(scores.masked_fill(~mask, float('-inf'))) before the softmax.": s.softmax(-1) @ v,
        "a score of 0 is not hidden (it still gets weight exp(0)): fill with float('-inf').": (
            s.masked_fill(~mask, 0.0).softmax(-1) @ v
        ),
        "you zeroed the weights after the softmax, so the rows no longer sum to 1: "
        "fill the scores with float('-inf') before the softmax instead.": (s.softmax(-1) * mask)
        @ v,
    }
    name_the_slip(out, slips)
    raise CheckFailed(
        "with a mask, the output differs from "
        "F.scaled_dot_product_attention(q, k, v, attn_mask=mask) "
        f"(largest difference {(out - want).abs().max().item():.3g}). "
        "Hide the keys where mask is False, before the softmax."
    )


ex_attention = Exercise(
    name="ex_attention",
    checker=_check_masked_attention,
    hints=(
        (
            "A key that may not be read must get weight exactly 0 after the softmax, while every "
            "row still sums to 1 over the keys it may read."
        ),
        (
            "Compute the scaled scores as in `attention`; replace the scores where the mask is "
            "False by minus infinity (`masked_fill`); softmax over the keys (the last axis); "
            "multiply by v."
        ),
    ),
    solution_text="""```python
def masked_attention(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    scores = scores.masked_fill(~mask, float("-inf"))  # hidden keys: exp(-inf) = 0
    return scores.softmax(dim=-1) @ v  # (..., T_q, d_v)
```""",
)


def _reference_object_only_mask(masks, patch_size: int = 4):

    on = (patch_mask(masks, patch_size) > 0).flatten(1)  # (B, N): patches touching the object
    B, N = on.shape
    T = N + 1
    mask = torch.ones(B, 1, T, T, dtype=torch.bool)
    mask[:, 0, 0, 1:] = on  # the CLS row: only object patches...
    return mask  # ...and CLS itself (mask[:, 0, 0, 0] stays True)


def _check_object_only_mask(object_only_mask) -> None:

    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 2:9, 5:14] = True  # objects of different sizes, not aligned to the patch grid
    masks[1, 20:31, 1:6] = True
    masks[2, 13:15, 22:30] = True
    want = _reference_object_only_mask(masks, 4)  # (3, 1, 65, 65)
    out = object_only_mask(masks)
    expect(out is not None, "your function returned None: build the mask and `return` it.")
    expect(isinstance(out, torch.Tensor), f"expected a tensor, got {type(out).__name__}.")
    expect(
        out.dtype == torch.bool,
        f"the mask must be bool (True = may attend), got {out.dtype}.",
    )
    if out.shape == (3, 65, 65):
        raise CheckFailed(
            "shape (B, T, T) would line B up with the heads axis of (B, heads, T, T): "
            "add a heads axis of size 1, e.g. mask[:, None], to get (B, 1, T, T)."
        )
    expect(
        out.shape == want.shape,
        f"expected shape (B, 1, T, T) = {tuple(want.shape)} (T = 1 + 64 tokens), "
        f"got {tuple(out.shape)}.",
    )
    if torch.equal(out, ~want):
        raise CheckFailed("the mask is inverted: True must mean *may attend*.")
    if torch.equal(out, want.transpose(-2, -1)):
        raise CheckFailed(
            "you restricted column 0 (who may read CLS). Rows are queries: restrict row 0, "
            "what CLS may read."
        )
    expect(
        bool(out[:, :, 1:].all()),
        "only the CLS row (row 0) changes: every patch query keeps reading every token.",
    )
    expect(
        bool(out[:, 0, 0, 0].all()),
        "CLS must keep attending to itself (mask[:, 0, 0, 0] = True), "
        "or an image whose object is missing would leave CLS with no key at all.",
    )
    got, ref = out[:, 0, 0, 1:], want[:, 0, 0, 1:]
    if torch.equal(got, ref):
        return
    grid = ref.reshape(3, 8, 8)
    if torch.equal(got, grid.transpose(-2, -1).flatten(1)):
        raise CheckFailed(
            "rows and columns of the patch grid are swapped: token 1 + r * 8 + c is the patch "
            "in grid row r, column c (flatten a (g, g) map row by row)."
        )

    cover = patch_mask(masks, 4).flatten(1)
    for thr in (0.5, 1.0):
        if torch.equal(got, cover >= thr) or torch.equal(got, cover > thr):
            raise CheckFailed(
                "a patch counts as object as soon as any of its pixels is object: "
                "use patch_mask(masks, 4) > 0, not a larger coverage threshold."
            )
    raise CheckFailed(
        f"the CLS row is wrong on {(got != ref).sum().item()} of {ref.numel()} patch entries: "
        "CLS may read exactly the patches with patch_mask(masks, 4) > 0."
    )


ex_object_mask = Exercise(
    name="ex_object_mask",
    checker=_check_object_only_mask,
    hints=(
        (
            "Only the CLS row (query 0) changes: it may read itself and the patches that touch the "
            "object; every other row stays all True."
        ),
        (
            "Start from an all-True bool mask of shape (B, 1, T, T); get the object patches with "
            "`patch_mask(masks, 4) > 0`, flatten that (B, 8, 8) map row by row into token order and"
            " write it into the CLS row after column 0 (which stays True)."
        ),
    ),
    solution_text="""```python
def object_only_mask(masks, patch_size=4):
    on = (patch_mask(masks, patch_size) > 0).flatten(1)  # (B, N)
    B, N = on.shape
    mask = torch.ones(B, 1, N + 1, N + 1, dtype=torch.bool)
    mask[:, 0, 0, 1:] = on  # CLS reads the object patches (and, at [0, 0], itself)
    return mask
```""",
)


def object_only_mask_reference(masks, patch_size: int = 4):
    """The series' answer to ex_object_mask, for the cell after the exercise: CLS may read
    itself and the patches that touch the object; every other token reads everything."""
    return _reference_object_only_mask(masks, patch_size)
