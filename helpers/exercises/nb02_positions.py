"""The exercises of notebook 02_positional_encoding: fold the CLS slot of `pos_embed` into the CLS
token; resample a position table to a rectangular grid, keeping the prefix slots apart.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..model import VisionTransformer
from .core import CheckFailed, Exercise, call_for_tensor, expect


def _check_fold_cls_slot(fold_cls_slot) -> None:

    with torch.random.fork_rng():  # leave the notebook's random stream alone
        torch.manual_seed(5)
        model = VisionTransformer(embed_dim=16, depth=1, num_heads=2).eval()
        with torch.no_grad():  # make both parts clearly non-zero
            model.cls_token.normal_(0.0, 0.5)
            model.pos_embed.normal_(0.0, 0.5)
        x = torch.rand(3, 3, 32, 32)
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        want = model(x)
    out = fold_cls_slot(model)
    expect(out is not None, "your function returned None: build the new model and `return` it.")
    expect(
        isinstance(out, VisionTransformer),
        f"return the model (a VisionTransformer), got {type(out).__name__}.",
    )
    expect(
        all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()),
        "you changed the model you were given: fold into a copy, new = copy.deepcopy(model).",
    )
    expect(
        isinstance(out.cls_token, torch.nn.Parameter) and out.cls_token.requires_grad,
        "cls_token must stay a trainable nn.Parameter: change its values in place under "
        "torch.no_grad() (e.g. new.cls_token += ...), do not replace it by a plain tensor.",
    )
    expect(
        torch.equal(out.pos_embed[:, 1:], model.pos_embed[:, 1:]),
        "only slot 0 belongs to CLS: the patch slots pos_embed[:, 1:] must stay as they are.",
    )
    expect(
        out.pos_embed[:, 0].abs().max() == 0,
        "the CLS slot pos_embed[:, 0] must be zero afterwards, or CLS gets it twice.",
    )
    with torch.no_grad():
        got = out(x)
    expect(
        torch.allclose(got, want, atol=1e-5),
        "the outputs changed: the new cls_token must be cls_token + pos_embed[:, :1] (added, "
        "since embed adds both to row 0), and only then the slot set to zero.",
    )


ex_fold_cls_slot = Exercise(
    name="ex_fold_cls_slot",
    checker=_check_fold_cls_slot,
    hints=(
        (
            "Row 0 of `embed(x)` is the CLS token plus the CLS slot of the position table, the same"
            " sum for every image: only the sum matters, so one of the two can carry all of it."
        ),
        (
            "Work on a `copy.deepcopy` of the model; inside `torch.no_grad()` add slot 0 of "
            "`pos_embed` to `cls_token` in place (so it stays a Parameter), then set that slot to "
            "zero."
        ),
    ),
    solution_text="""```python
def fold_cls_slot(model):
    new = copy.deepcopy(model)
    with torch.no_grad():
        new.cls_token += new.pos_embed[:, :1]  # row 0 of embed(x) keeps the same value...
        new.pos_embed[:, 0] = 0  # ...now carried by the CLS token alone
    return new
```""",
)


def _resample_hw_references(pos_embed, old_hw, new_hw, num_prefix_tokens):
    """The accepted answers: bicubic or bilinear, with or without antialias."""

    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    D = pos_embed.shape[-1]
    grid = patches.reshape(1, *old_hw, D).permute(0, 3, 1, 2)  # (1, D, h, w)
    refs = []
    for mode in ("bicubic", "bilinear"):
        for aa in (True, False):
            r = F.interpolate(grid, size=new_hw, mode=mode, align_corners=False, antialias=aa)
            refs.append(torch.cat([prefix, r.permute(0, 2, 3, 1).reshape(1, -1, D)], 1))
    return refs


def _check_resample_hw(resample_hw) -> None:

    g = torch.Generator().manual_seed(4)
    for prefix, old, new, D in ((1, 4, (6, 10), 8), (2, 6, (9, 3), 4)):
        pe = torch.randn(1, prefix + old * old, D, generator=g)
        refs = _resample_hw_references(pe, (old, old), new, prefix)
        out = call_for_tensor(
            resample_hw,
            pe,
            new,
            prefix,
            torch_hint=(
                "Split off the prefix first: pos_embed[:, :num_prefix_tokens]"
                " and pos_embed[:, num_prefix_tokens:]; only the second part forms a grid."
            ),
            if_none="build the table and `return` it.",
        )
        out = out.detach()
        want_shape = (1, prefix + new[0] * new[1], D)
        if out.shape == (1, new[0] * new[1], D):
            raise CheckFailed(
                "the prefix slots are missing: torch.cat([prefix, patches], dim=1) at the end."
            )
        expect(
            out.shape == want_shape,
            f"for prefix={prefix}, new grid {new} (rows, columns) and D={D} expected shape "
            f"{want_shape}, got {tuple(out.shape)}.",
        )
        expect(
            torch.equal(out[:, :prefix], pe[:, :prefix]),
            "the prefix slots (CLS, registers) must be copied unchanged: they have no "
            "position in the image, so they are never interpolated.",
        )
        if any(torch.allclose(out, r, atol=1e-4) for r in refs):
            continue
        h, w = new
        flipped = _resample_hw_references(pe, (old, old), (w, h), prefix)  # size=(w, h)
        col_major = [  # the right grid, listed column by column
            r[:, prefix:].reshape(h, w, D).transpose(0, 1).reshape(1, -1, D) for r in refs
        ]
        if any(torch.allclose(out, r, atol=1e-4) for r in flipped) or any(
            torch.allclose(out[:, prefix:], c, atol=1e-4) for c in col_major
        ):
            raise CheckFailed(
                "rows and columns are swapped: new_hw is (rows, columns) = (height, width), "
                "and the output lists the slots row by row."
            )
        scrambled = F.interpolate(
            pe[:, prefix:].reshape(1, D, old, old), size=new, mode="bicubic", align_corners=False
        )  # a reshape where a permute was needed
        if torch.allclose(out[:, prefix:], scrambled.reshape(1, -1, D), atol=1e-4):
            raise CheckFailed(
                "the channels got mixed with the positions: a plain .reshape(1, D, g, g) of a "
                "(1, N, D) table does not move D to the front. Use "
                ".reshape(1, g, g, D).permute(0, 3, 1, 2), and permute back afterwards."
            )
        raise CheckFailed(
            "the patch slots differ from a bicubic (or bilinear) resampling of the grid: "
            "reshape the patch slots to (1, g, g, D), permute to (1, D, g, g), "
            "F.interpolate(..., size=new_hw, mode='bicubic', align_corners=False), then back."
        )


ex_resample_hw = Exercise(
    name="ex_resample_hw",
    checker=_check_resample_hw,
    hints=(
        (
            "Only the patch slots form a grid, so only they can be resized like an image; the "
            "prefix slots (CLS, registers) have no place in it and are kept as they are."
        ),
        (
            "Split the table into prefix and patch slots; reshape the patch slots into a (1, D, g, "
            "g) image (channels first); resize it with `F.interpolate` to `new_hw` (bicubic); turn "
            "it back into (1, h * w, D) row by row; put the prefix slots in front again."
        ),
    ),
    solution_text="""```python
def resample_hw(pos_embed, new_hw, num_prefix_tokens=1):
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    g, D = math.isqrt(patches.shape[1]), patches.shape[-1]
    grid = patches.reshape(1, g, g, D).permute(0, 3, 1, 2)  # (1, D, g, g)
    grid = F.interpolate(grid, size=new_hw, mode="bicubic", align_corners=False)  # (1, D, h, w)
    patches = grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], D)
    return torch.cat([prefix, patches], dim=1)  # the prefix slots, unchanged, first
```""",
)
