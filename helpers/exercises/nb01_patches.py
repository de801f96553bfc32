"""The exercises of notebook 01_patches_and_cls_token: prepend the CLS token to the patch tokens."""

from __future__ import annotations

import torch

from .core import CheckFailed, Exercise, call_for_tensor, expect


def _check_prepend_cls(prepend_cls) -> None:

    g = torch.Generator().manual_seed(1)
    B, N, D = 3, 5, 8
    cls = torch.nn.Parameter(torch.randn(1, 1, D, generator=g))
    patches = torch.randn(B, N, D, generator=g, requires_grad=True)
    out = call_for_tensor(
        prepend_cls,
        cls,
        patches,
        torch_hint=(
            "Make the CLS token (B, 1, D) first with "
            "cls_token.expand(B, -1, -1), then join along the token axis, dim=1 "
            "(dim 0 is the batch, dim 2 the width D)."
        ),
        if_none="build the sequence and `return` it.",
    )
    if out.shape in ((B, 1, D), (1, 1, D), (B, D)):
        raise CheckFailed(
            f"you returned only the CLS token, shape {tuple(out.shape)}: return the whole "
            f"sequence, CLS followed by the {N} patch tokens, shape (B, N + 1, D)."
        )
    expect(
        out.shape == (B, N + 1, D),
        f"for B={B}, N={N}, D={D} expected shape (B, N + 1, D) = {(B, N + 1, D)}, got "
        f"{tuple(out.shape)}: concatenate along dim=1, the token axis.",
    )
    want_cls = cls.detach().expand(B, 1, D)
    if torch.equal(out[:, -1:].detach(), want_cls) and torch.equal(
        out[:, :-1].detach(), patches.detach()
    ):
        raise CheckFailed(
            "the CLS token is at the end: it must come first (index 0), "
            "torch.cat([cls, patches], dim=1). Pooling reads tokens[:, 0]."
        )
    expect(
        torch.equal(out[:, :1].detach(), want_cls),
        "token 0 of every image must be the CLS parameter itself, unchanged.",
    )
    expect(
        torch.equal(out[:, 1:].detach(), patches.detach()),
        "tokens 1..N must be the patch tokens, unchanged and in their order.",
    )
    loss = (out * torch.randn(out.shape, generator=g)).sum()
    if not out.requires_grad:
        raise CheckFailed(
            "no gradient can flow back to the CLS parameter: the output is cut from the graph. "
            "Do not use .data, .detach() or torch.tensor(...) on it; expand (or repeat) the "
            "parameter itself."
        )
    loss.backward()
    expect(
        cls.grad is not None and cls.grad.abs().sum() > 0,
        "no gradient reached the CLS parameter: the copy you prepended is detached from it "
        "(.data, .detach(), .clone().detach() or a new tensor). Use cls_token.expand(B, -1, -1).",
    )
    expect(
        patches.grad is not None and patches.grad.abs().sum() > 0,
        "no gradient reached the patch tokens: do not detach them.",
    )
    before = cls.detach().clone()
    torch.optim.SGD([cls], lr=0.1).step()
    expect(
        not torch.equal(cls.detach(), before),
        "the CLS parameter did not change after an optimizer step.",
    )
    try:
        one = prepend_cls(cls, patches[:1].detach())  # the batch size must not be hard-coded
    except RuntimeError:
        one = None
    expect(
        one is not None and tuple(one.shape) == (1, N + 1, D),
        f"with one image the output should be (1, {N + 1}, {D}), but it failed: "
        "take B from patch_tokens.shape[0], do not hard-code it.",
    )


ex_prepend_cls = Exercise(
    name="ex_prepend_cls",
    checker=_check_prepend_cls,
    hints=(
        (
            "The CLS token is one (1, 1, D) parameter, but every image in the batch needs its own "
            "copy in front of its patches, and gradients from all copies must reach that one "
            "parameter."
        ),
        (
            "Read the batch size B from the patch tokens; make a (B, 1, D) view of the parameter "
            "with `expand` (no copy, still connected to the parameter); join the two tensors with "
            "`torch.cat` along the token axis, CLS first."
        ),
    ),
    solution_text="""```python
def prepend_cls(cls_token, patch_tokens):
    B = patch_tokens.shape[0]
    cls = cls_token.expand(B, -1, -1)  # (B, 1, D): a view of the one parameter
    return torch.cat([cls, patch_tokens], dim=1)  # (B, N + 1, D), CLS at index 0
```""",
)
