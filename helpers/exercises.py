"""Self-checking exercises, learntools-style: `ex.check(answer)`, `ex.hint()`, `ex.solution()`.

A check tests what the answer *does* (shapes, values, gradients, an optimizer step), never
how it is written. It prints a verdict and returns True or False, so a notebook can also
`assert` it. Each notebook's exercises are defined at the bottom of this file.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from .attention import patch_mask
from .model import VisionTransformer, count_parameters

TIME_LIMIT = 20.0  # seconds a check may run (every check here takes well under one)


class CheckFailed(AssertionError):
    """Raised inside a check with a message that tells the learner what went wrong."""


class _TimeUp(BaseException):
    """The check ran past its time limit. A BaseException, so that an `except Exception`
    in the learner's code (or in a checker) cannot swallow it and keep looping."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise _TimeUp in the block after `seconds`, through SIGALRM. Where there is no
    SIGALRM (Windows) or off the main thread (signals only reach the main thread; Jupyter
    runs cells there), and for None or 0, the block runs without a limit. The previous
    SIGALRM handler and timer are put back afterwards."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not seconds or seconds <= 0 or not usable:
        yield
        return

    armed = True

    def on_alarm(signum, frame):
        if armed:
            raise _TimeUp

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        try:  # the alarm may still go off here: the inner finally restores all the same
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            armed = False
            # a handler installed outside Python reads as None: the default is the best we have
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
            if outer_delay:  # someone else's timer was running: let it go on (or fire now)
                left = max(outer_delay - (time.monotonic() - start), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


@dataclass
class Exercise:
    """One exercise: `check(answer)`, tiered `hint()`s, then `solution()`.

    hints: from the idea to the approach; each call of `hint()` shows the next one, and
    after the last it points to `solution()` (the code itself)."""

    name: str
    checker: Callable  # raises CheckFailed (or any exception) when the answer is wrong
    hints: tuple[str, ...]  # the idea first, then the approach; never the code
    solution_text: str  # Markdown, usually a code block

    def __post_init__(self):
        if isinstance(self.hints, str) or not self.hints:
            raise TypeError(f"{self.name}: hints must be a non-empty tuple of strings.")
        self._hints_shown = 0

    def check(self, *answer, quiet: bool = False, time_limit: float | None = TIME_LIMIT) -> bool:
        """Run the checker on the answer: print a verdict, return True or False, never raise.

        time_limit: seconds before a function that never returns is reported as a failure
        (None: no limit; also none on Windows or off the main thread).
        """
        try:
            with _time_limit(time_limit):
                self.checker(*answer)
        except _TimeUp:
            ok = False
            msg = (
                f"❌ Not yet: your function did not return within {time_limit:g} s: look for a "
                "loop that never ends (a `while` whose condition never becomes False, or a "
                "counter that is never updated), or work far bigger than the exercise needs."
                f"\n\nNeed a nudge? Run `{self.name}.hint()`."
            )
        except CheckFailed as e:
            ok, msg = False, f"❌ Not yet: {e}\n\nNeed a nudge? Run `{self.name}.hint()`."
        except Exception as e:  # the learner's code crashed inside the check
            ok = False
            msg = (
                f"❌ Your code raised {type(e).__name__}: {e}\n\n"
                f"Need a nudge? Run `{self.name}.hint()`."
            )
        else:
            ok, msg = True, "✅ Correct!"
        if not quiet:
            print(msg)
        return ok

    def hint(self) -> None:
        """The next hint: the idea first, then the approach; after the last, the way on."""
        n = len(self.hints)
        i = self._hints_shown
        if i < n:
            self._hints_shown += 1
            more = (
                f"\n   (run `{self.name}.hint()` again for hint {i + 2} of {n})"
                if i + 1 < n
                else f"\n   (that was the last hint: `{self.name}.solution()` shows an answer)"
            )
            print(f"💡 Hint {i + 1} of {n}: {self.hints[i]}{more}")
        else:
            print(
                f"💡 No more hints: `{self.name}.solution()` shows an answer "
                f"(`{self.name}.hint_reset()` starts the hints again)."
            )

    def hint_reset(self) -> None:
        """Start the hints again from the first."""
        self._hints_shown = 0

    def solution(self) -> None:
        display(Markdown(self.solution_text))


def expect(condition: bool, message: str) -> None:
    """Fail a check with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def call_for_tensor(fn, *args, torch_hint: str, if_none: str) -> torch.Tensor:
    """Call a learner's function `fn(*args)`: an error from torch fails the check with
    `torch_hint` after torch's message, None with `if_none`, anything but a tensor too."""
    try:
        out = fn(*args)
    except RuntimeError as e:
        raise CheckFailed(f"torch raised: {e}. {torch_hint}") from None
    expect(out is not None, f"your function returned None: {if_none}")
    expect(isinstance(out, torch.Tensor), f"expected a tensor, got {type(out).__name__}.")
    return out


def name_the_slip(answer, slips: dict, atol: float = 1e-5) -> None:
    """If `answer` equals a known wrong result, fail with that slip's message.

    slips: {message: the tensor a common mistake would produce}.
    """
    for message, wrong in slips.items():
        if answer.shape == wrong.shape and torch.allclose(answer, wrong, atol=atol):
            raise CheckFailed(message)


# --- 01 / 02 ---
# 01_patches_and_cls_token: prepend the CLS token.
# 02_positional_encoding: fold the CLS slot of pos_embed into the CLS token; resample a
# position table to a rectangular grid, keeping the prefix slots apart.


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


# --- 03 ---
# 03_attention: masked attention from scratch; a mask that lets CLS read only the object.


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


# --- 04 ---
# 04_classification: global average pooling over the patch tokens only; how many parameters
# a model saves when it drops the CLS token.


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


# --- 05 ---
# 05_layers_and_explanations: the logit lens by hand; mean ablation of chosen patch tokens.


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


# --- 06 ---
# 06_distillation_and_registers: build DeiT's two-token prefix with its position slots;
# classify every patch with one shared head and average the logits.


def _check_two_token_prefix(two_token_prefix) -> None:
    from .distill import DistilledViT

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
    from .tokens import PatchClassifierViT

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


# --- 07 (CLIP) ---
# 07_dino_and_clip, the CLIP section: CLIP's symmetric InfoNCE loss with a learned temperature.


def _check_clip_loss(clip_loss) -> None:
    g = torch.Generator().manual_seed(11)
    img = (2 * torch.randn(6, 5, generator=g)).requires_grad_()  # (B, E): not unit length
    txt = (3 * torch.randn(6, 5, generator=g) + 0.5).requires_grad_()
    logit_scale = torch.tensor(1.3, requires_grad=True)  # the log of the inverse temperature
    out = call_for_tensor(
        clip_loss,
        img.clone(),
        txt.clone(),
        logit_scale,
        torch_hint=(
            "Normalise both (B, E) inputs, form the (B, B) logits "
            "image @ text.T, then take the cross-entropy both ways with targets 0..B-1."
        ),
        if_none="`return` the loss.",
    )
    expect(out.ndim == 0, f"the loss must be one number (a 0-d tensor), got {tuple(out.shape)}.")
    target = torch.arange(6)

    def ce_both(logits):
        return F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)

    with torch.no_grad():
        i_n, t_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        s = logit_scale.detach()
        rows, cols = ce_both(s.exp() * i_n @ t_n.T)
        right = (rows + cols) / 2
        name_the_slip(
            out.detach()[None],
            {
                "only the image-to-text half: add the cross-entropy of the columns (each "
                "text over the images, logits.T) and average the two.": rows[None],
                "only the text-to-image half: add the cross-entropy of the rows (each image "
                "over the texts) and average the two.": cols[None],
                "you summed the two halves: CLIP averages them ((a + b) / 2).": (rows + cols)[None],
                "the embeddings were not normalised: divide each row by its length "
                "(F.normalize(x, dim=-1)), so that the logits are cosines times the scale.": (
                    sum(ce_both(s.exp() * img @ txt.T)) / 2
                )[None],
                "the temperature goes the wrong way: the logits are multiplied by "
                "exp(logit_scale) (the inverse temperature, 1 / 0.07 at the start), not "
                "divided by it.": (sum(ce_both(i_n @ t_n.T / s.exp())) / 2)[None],
                "logit_scale is a log: multiply by logit_scale.exp(), not by logit_scale itself.": (
                    sum(ce_both(s * i_n @ t_n.T)) / 2
                )[None],
                "no temperature at all: multiply the cosines by logit_scale.exp().": (
                    sum(ce_both(i_n @ t_n.T)) / 2
                )[None],
            },
        )
        expect(
            torch.allclose(out.detach(), right, atol=1e-5),
            f"your loss is {out.item():.4f}, the symmetric InfoNCE loss is {right.item():.4f}.",
        )
    expect(out.requires_grad, "the loss has no gradient: keep it a tensor (no .item()).")
    out.backward()
    expect(
        logit_scale.grad is not None and logit_scale.grad.abs() > 0,
        "no gradient reaches logit_scale: the temperature must be learned, so use the tensor "
        "itself (logit_scale.exp()), not a copy or a Python float.",
    )
    same = torch.eye(6)  # matching pairs identical: a low loss, lower at a higher scale
    low = clip_loss(same, same, torch.tensor(4.0))
    expect(low.item() < 0.1, "for identical image and text embeddings the loss should be near 0.")


ex_clip_loss = Exercise(
    name="ex_clip_loss",
    checker=_check_clip_loss,
    hints=(
        (
            "Row i of the images and row i of the texts are a pair. Score every image against "
            "every text (cosine similarity, scaled by exp(logit_scale)); each image must pick "
            "its own text among the B texts, and each text its own image among the B images."
        ),
        (
            "img = F.normalize(image_emb, dim=-1) and the same for the texts; logits = "
            "logit_scale.exp() * img @ txt.T is (B, B); targets = torch.arange(B); average "
            "F.cross_entropy(logits, targets) and F.cross_entropy(logits.T, targets)."
        ),
    ),
    solution_text="""```python
def clip_loss(image_emb, text_emb, logit_scale):
    img = F.normalize(image_emb, dim=-1)  # (B, E), unit rows
    txt = F.normalize(text_emb, dim=-1)  # (B, E)
    logits = logit_scale.exp() * img @ txt.T  # (B, B): image i vs text j
    target = torch.arange(len(img))  # the pairs sit on the diagonal
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
```""",
)


# --- 07 ---
# 07_dino_and_clip: DINO's teacher targets, centred and sharpened.


def _check_teacher_targets(teacher_targets) -> None:
    g = torch.Generator().manual_seed(7)
    t = torch.randn(5, 8, generator=g) * 0.3 + torch.linspace(0, 1, 8)  # (B, K)
    c = torch.randn(8, generator=g) * 0.3  # (K,)
    temp = 0.04
    c_in = c.clone()
    out = teacher_targets(t.clone(), c_in, temp)
    expect(
        isinstance(out, torch.Tensor),
        f"return a tensor of probabilities, got {type(out).__name__}.",
    )
    right = F.softmax((t - c) / temp, dim=-1)
    expect(
        out.shape == right.shape,
        f"expected one distribution per image, shape (B, K) = {tuple(right.shape)}, got "
        f"{tuple(out.shape)}.",
    )
    name_the_slip(
        out,
        {
            "no centering: subtract the center from the teacher's scores before the "
            "softmax.": F.softmax(t / temp, dim=-1),
            "the center was added: centering subtracts it (t - center).": F.softmax(
                (t + c) / temp, dim=-1
            ),
            "you multiplied by the temperature: divide by it (a small temperature sharpens "
            "the distribution).": F.softmax((t - c) * temp, dim=-1),
            "no sharpening: divide the centred scores by the temperature before the "
            "softmax.": F.softmax(t - c, dim=-1),
            "the softmax ran over the batch (dim=0): each image's distribution is over "
            "the K prototypes, the last dimension.": F.softmax((t - c) / temp, dim=0),
            "you returned log-probabilities: the teacher's targets are probabilities "
            "(softmax, not log_softmax).": F.log_softmax((t - c) / temp, dim=-1),
            "you divided before centering: (t - c) / temp, not t / temp - c.": F.softmax(
                t / temp - c, dim=-1
            ),
        },
    )
    expect(
        torch.allclose(out, right, atol=1e-5),
        "your targets are not softmax((teacher_out - center) / temperature) over the last "
        "dimension.",
    )
    expect(
        torch.allclose(out.sum(-1), torch.ones(len(t)), atol=1e-5),
        "each row should sum to 1.",
    )
    expect(torch.equal(c_in, c), "leave the center unchanged (no in-place update here).")


ex_teacher_targets = Exercise(
    name="ex_teacher_targets",
    checker=_check_teacher_targets,
    hints=(
        (
            "Centering moves every image's scores by the same vector (the running mean of the "
            "teacher's scores); sharpening is a softmax at a low temperature."
        ),
        (
            "Subtract `center` (K,) from `teacher_out` (B, K) (broadcasting does the rest), "
            "divide by `temp`, then softmax over dim=-1."
        ),
    ),
    solution_text="""```python
def teacher_targets(teacher_out, center, temp):
    centred = teacher_out - center  # (B, K): the same shift for every image
    return torch.softmax(centred / temp, dim=-1)  # sharpened: temp < student's 0.1
```""",
)


# --- 08 ---
# 08_best_practices: optimizer parameter groups with the CLS token at its own learning rate;
# the CLS + mean-of-patches features of DINOv2's linear evaluation.


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
