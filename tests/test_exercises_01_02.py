"""The exercise checks of notebooks 01 and 02: right answers pass, common slips fail with a hint."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.exercises.core import Exercise
from helpers.exercises.nb01_patches import ex_prepend_cls
from helpers.exercises.nb02_positions import ex_fold_cls_slot, ex_resample_hw
from helpers.model import resample_pos_embed
from tests.conftest import failure

# --- 01: prepend the CLS token ---


def prepend_ok(cls_token, patch_tokens):
    return torch.cat([cls_token.expand(patch_tokens.shape[0], -1, -1), patch_tokens], dim=1)


def test_prepend_correct_answers_pass():
    assert ex_prepend_cls.check(prepend_ok, quiet=True)

    def with_repeat(cls_token, patch_tokens):  # repeat copies, but gradients still flow
        return torch.cat([cls_token.repeat(len(patch_tokens), 1, 1), patch_tokens], 1)

    assert ex_prepend_cls.check(with_repeat, quiet=True)


def test_prepend_placeholder_says_not_yet(capsys):
    def placeholder(cls_token, patch_tokens): ...

    assert ex_prepend_cls.check(placeholder) is False
    out = capsys.readouterr().out
    assert "Not yet" in out and "returned None" in out and "ex_prepend_cls.hint()" in out


def test_prepend_at_the_end_fails():
    def at_end(cls_token, patch_tokens):
        return torch.cat([patch_tokens, cls_token.expand(len(patch_tokens), -1, -1)], 1)

    assert "at the end" in failure(ex_prepend_cls, at_end)


@pytest.mark.parametrize(
    "cut",
    [
        lambda c, B: c.detach().repeat(B, 1, 1),
        lambda c, B: c.data.expand(B, -1, -1),
        lambda c, B: torch.tensor(c.tolist()).expand(B, -1, -1),
    ],
)
def test_prepend_without_gradient_fails(cut):
    def detached(cls_token, patch_tokens):
        return torch.cat([cut(cls_token, len(patch_tokens)), patch_tokens], 1)

    assert "no gradient reached the CLS parameter" in failure(ex_prepend_cls, detached)


def test_prepend_all_detached_fails():
    def all_detached(cls_token, patch_tokens):
        return prepend_ok(cls_token, patch_tokens).detach()

    assert "cut from the graph" in failure(ex_prepend_cls, all_detached)


@pytest.mark.parametrize("dim", [0, 2, -1])
def test_prepend_wrong_dim_fails(dim):
    def wrong_dim(cls_token, patch_tokens):
        return torch.cat([cls_token.expand(len(patch_tokens), -1, -1), patch_tokens], dim=dim)

    assert "dim=1" in failure(ex_prepend_cls, wrong_dim)


def test_prepend_wrong_dim_without_expand_fails():
    def no_expand(cls_token, patch_tokens):
        return torch.cat([cls_token, patch_tokens], dim=0)

    assert "expand" in failure(ex_prepend_cls, no_expand)


def test_prepend_only_cls_fails():
    def only_cls(cls_token, patch_tokens):
        return cls_token.expand(len(patch_tokens), -1, -1)

    assert "only the CLS token" in failure(ex_prepend_cls, only_cls)


def test_prepend_hard_coded_batch_fails():
    def hard_coded(cls_token, patch_tokens):
        return torch.cat([cls_token.expand(3, -1, -1), patch_tokens], 1)

    assert "do not hard-code" in failure(ex_prepend_cls, hard_coded)


# --- 02: fold the CLS slot into the CLS token ---


def fold_ok(model):
    new = copy.deepcopy(model)
    with torch.no_grad():
        new.cls_token += new.pos_embed[:, :1]
        new.pos_embed[:, 0] = 0
    return new


def test_fold_correct_passes_and_keeps_the_rng():
    state = torch.random.get_rng_state()
    assert ex_fold_cls_slot.check(fold_ok, quiet=True)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_fold_placeholder_says_not_yet():
    assert "returned None" in failure(ex_fold_cls_slot, lambda model: None)


def test_fold_in_place_fails():
    def in_place(model):
        with torch.no_grad():
            model.cls_token += model.pos_embed[:, :1]
            model.pos_embed[:, 0] = 0
        return model

    assert "deepcopy" in failure(ex_fold_cls_slot, in_place)


def test_fold_slot_not_zeroed_fails():
    def not_zeroed(model):
        new = copy.deepcopy(model)
        with torch.no_grad():
            new.cls_token += new.pos_embed[:, :1]
        return new

    assert "twice" in failure(ex_fold_cls_slot, not_zeroed)


def test_fold_wrong_slot_fails():
    def last_slot(model):
        new = copy.deepcopy(model)
        with torch.no_grad():
            new.cls_token += new.pos_embed[:, -1:]
            new.pos_embed[:, -1] = 0
        return new

    assert "only slot 0" in failure(ex_fold_cls_slot, last_slot)


@pytest.mark.parametrize("sign", [0.0, -1.0])
def test_fold_without_adding_fails(sign):
    def replaced(model):
        new = copy.deepcopy(model)
        with torch.no_grad():
            new.cls_token.mul_(sign).add_(sign * new.pos_embed[:, :1])
            new.pos_embed[:, 0] = 0
        return new

    assert "outputs changed" in failure(ex_fold_cls_slot, replaced)


def test_fold_plain_tensor_fails():
    def plain(model):
        new = copy.deepcopy(model)
        with torch.no_grad():
            cls = new.cls_token + new.pos_embed[:, :1]
            new.pos_embed[:, 0] = 0
        del new.cls_token
        new.cls_token = cls
        return new

    assert "nn.Parameter" in failure(ex_fold_cls_slot, plain)


# --- 02: resample to a rectangular grid ---


def resample_hw_ok(pos_embed, new_hw, num_prefix_tokens=1, mode="bicubic", antialias=False):
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    g, D = math.isqrt(patches.shape[1]), patches.shape[-1]
    grid = patches.reshape(1, g, g, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_hw, mode=mode, align_corners=False, antialias=antialias)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, -1, D)], dim=1)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("antialias", [False, True])
def test_resample_hw_correct_passes(mode, antialias):
    def answer(pe, hw, n):
        return resample_hw_ok(pe, hw, n, mode, antialias)

    assert ex_resample_hw.check(answer, quiet=True)


def test_resample_hw_square_matches_helpers():
    pe = torch.randn(1, 1 + 64, 16)
    torch.testing.assert_close(
        resample_hw_ok(pe, (12, 12), 1, antialias=True), resample_pos_embed(pe, 12, 1)
    )


def test_resample_hw_placeholder_says_not_yet():
    assert "returned None" in failure(ex_resample_hw, lambda pe, hw, n: None)


def test_resample_hw_prefix_interpolated_fails():
    def with_prefix_in_grid(pos_embed, new_hw, num_prefix_tokens=1):
        # treats the whole table as the grid: cannot even reshape it into a square
        g, D = math.isqrt(pos_embed.shape[1]), pos_embed.shape[-1]
        grid = pos_embed.reshape(1, g, g, D).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=new_hw, mode="bicubic").flatten(2).transpose(1, 2)

    assert "prefix" in failure(ex_resample_hw, with_prefix_in_grid)


def test_resample_hw_prefix_dropped_fails():
    def dropped(pos_embed, new_hw, num_prefix_tokens=1):
        return resample_hw_ok(pos_embed, new_hw, num_prefix_tokens)[:, num_prefix_tokens:]

    assert "prefix slots are missing" in failure(ex_resample_hw, dropped)


def test_resample_hw_prefix_changed_fails():
    def scaled_prefix(pos_embed, new_hw, num_prefix_tokens=1):
        out = resample_hw_ok(pos_embed, new_hw, num_prefix_tokens).clone()
        out[:, :num_prefix_tokens] *= 0
        return out

    assert "copied unchanged" in failure(ex_resample_hw, scaled_prefix)


def test_resample_hw_swapped_axes_fails():
    def swapped(pos_embed, new_hw, num_prefix_tokens=1):
        return resample_hw_ok(pos_embed, new_hw[::-1], num_prefix_tokens)

    assert "swapped" in failure(ex_resample_hw, swapped)


def test_resample_hw_reshape_instead_of_permute_fails():
    def reshaped(pos_embed, new_hw, num_prefix_tokens=1):
        prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
        g, D = math.isqrt(patches.shape[1]), patches.shape[-1]
        grid = F.interpolate(patches.reshape(1, D, g, g), size=new_hw, mode="bicubic")
        return torch.cat([prefix, grid.reshape(1, -1, D)], dim=1)

    assert "permute" in failure(ex_resample_hw, reshaped)


def test_hints_come_in_tiers_then_point_to_the_solution(capsys):
    ex = Exercise(
        "ex_tiers", checker=lambda f: None, hints=("the idea", "the approach"), solution_text=""
    )
    ex.hint()
    first = capsys.readouterr().out
    assert "Hint 1 of 2: the idea" in first and "again for hint 2" in first
    ex.hint()
    second = capsys.readouterr().out
    assert "Hint 2 of 2: the approach" in second and "ex_tiers.solution()" in second
    ex.hint()
    assert "No more hints" in capsys.readouterr().out
    ex.hint_reset()
    ex.hint()
    assert "Hint 1 of 2" in capsys.readouterr().out


def test_a_single_string_is_not_a_list_of_hints():
    with pytest.raises(TypeError, match="tuple of strings"):
        Exercise("ex_bad", checker=lambda f: None, hints="one long hint", solution_text="")
