"""The core of `Exercise.check`: an un-swallowable time limit that counts only the learner's
code, float64 answers, and a checker's own crash not blamed on the learner."""

import copy
import importlib
import math
import os
import re
import signal
import time

import pytest
import torch

from helpers.exercises.core import Exercise

looping = Exercise("ex_loop", checker=lambda f: f(), hints=("",), solution_text="")


def swallow_everything(*a):  # a learner's loop with a bare except
    while True:
        try:
            time.sleep(0.01)
        except:  # noqa: E722
            pass


def test_a_bare_except_cannot_swallow_the_time_limit(capsys):
    start = time.monotonic()
    assert looping.check(swallow_everything, time_limit=0.2) is False
    assert time.monotonic() - start < 4
    out = capsys.readouterr().out
    assert "did not return within 0.2 s" in out and "bare `except:`" in out


def test_only_the_learners_time_counts():
    def slow_checker(f):
        time.sleep(0.4)  # the checker's own warm-up: not the learner's time
        f()
        time.sleep(0.4)
        f()

    ex = Exercise("ex_slow", checker=slow_checker, hints=("",), solution_text="")
    assert ex.check(lambda: time.sleep(0.05), quiet=True, time_limit=0.3)
    assert ex.check(lambda: time.sleep(0.2), quiet=True, time_limit=0.3) is False  # 0.4 s in all


def test_a_checkers_own_crash_is_not_blamed_on_the_learner(capsys):
    def broken(f):
        f()
        raise ValueError("oops")

    ex = Exercise("ex_broken", checker=broken, hints=("",), solution_text="")
    assert ex.check(lambda: None) is False
    out = capsys.readouterr().out
    assert "Your code raised" not in out and "checker raised ValueError" in out
    assert ex.check(lambda: 1 / 0) is False
    assert "Your code raised ZeroDivisionError" in capsys.readouterr().out


SOLUTIONS = [
    ("nb01_patches", "ex_prepend_cls", "prepend_cls"),
    ("nb02_positions", "ex_fold_cls_slot", "fold_cls_slot"),
    ("nb02_positions", "ex_resample_hw", "resample_hw"),
    ("nb03_attention", "ex_attention", "masked_attention"),
    ("nb03_attention", "ex_object_mask", "object_only_mask"),
    ("nb04_classification", "ex_gap_pool", "gap_pool"),
    ("nb04_classification", "ex_saved_parameters", "saved_parameters"),
    ("nb05_layers", "ex_logit_lens", "lens"),
    ("nb05_layers", "ex_mean_ablate", "mean_ablate"),
    ("nb06_tokens", "ex_two_token_prefix", "two_token_prefix"),
    ("nb06_tokens", "ex_patch_vote", "patch_vote"),
    ("nb07_dino_clip", "ex_teacher_targets", "teacher_targets"),
    ("nb07_dino_clip", "ex_clip_loss", "clip_loss"),
    ("nb08_practices", "ex_cls_param_groups", "cls_param_groups"),
    ("nb08_practices", "ex_cls_mean_features", "cls_mean_features"),
]


def in_float64(fn):
    """A right answer whose maths runs in float64 (float tensors in, float64 out)."""

    def f(*args, **kwargs):
        if any(isinstance(a, torch.nn.Module) for a in args):  # its weights stay float32
            return fn(*args, **kwargs)
        args = [
            a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args
        ]
        out = fn(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            out = out.double()
        return out

    return f


@pytest.mark.parametrize("mod,ex_name,sol", SOLUTIONS, ids=lambda x: x)
def test_a_right_answer_in_float64_passes(mod, ex_name, sol, capsys):
    m = importlib.import_module(f"helpers.exercises.{mod}")
    ex = getattr(m, ex_name, None)
    if ex is None:
        pytest.skip(f"{ex_name} not in {mod}")
    code = re.search(r"```python\n(.*?)```", ex.solution_text, re.S).group(1)
    space = {**vars(m), "torch": torch, "F": torch.nn.functional, "math": math, "copy": copy}
    exec(code, space)
    fn = space[sol]
    assert ex.check(fn, quiet=True), "the solution itself must pass"
    ok = ex.check(in_float64(fn))
    assert ok, capsys.readouterr().out


def test_a_second_ctrl_c_gets_out_of_a_bare_except(capsys):
    def f():
        start = time.monotonic()
        while time.monotonic() - start < 5:
            try:
                os.kill(os.getpid(), signal.SIGINT)  # the learner presses Ctrl-C, again
                time.sleep(0.05)
            except:  # noqa: E722
                pass

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("Ctrl-C is handled elsewhere here")
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        looping.check(f, time_limit=10)
    assert time.monotonic() - start < 3
    assert "caught the first Ctrl-C" in capsys.readouterr().out
