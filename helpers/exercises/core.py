"""The core of the exercises: `Exercise` (`ex.check(answer)`, `ex.hint()`, `ex.solution()`)
and the checks that every notebook's checkers share.

A check tests what the answer *does* (shapes, values, gradients, an optimizer step), never
how it is written. It prints a verdict and returns True or False, so a notebook can also
`assert` it. Each notebook's exercises live in their own module beside this one
(`nb01_patches` ... `nb08_practices`).
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from IPython.display import Markdown, display

TIME_LIMIT = 20.0  # seconds the learner's code may run in one check (each takes well under one)
GRACE = 1.0  # seconds a swallowed time-out (a bare `except:`) gets before it is forced out
_REPEAT = 0.05  # seconds between the time-outs raised again once the first was swallowed


class CheckFailed(AssertionError):
    """Raised inside a check with a message that tells the learner what went wrong."""


class _TimeUp(BaseException):
    """The check ran past its time limit. A BaseException, so that an `except Exception`
    in the learner's code (or in a checker) cannot swallow it and keep looping."""


class _Clock:
    """The learner's time in one check: only the time spent inside the learner's code
    counts (the checker's own work, a first-use warm-up included, does not).

    `run(fn, ...)` calls the learner's code with SIGALRM set to what is left of the budget.
    A time-out is a `_TimeUp` raised in the learner's code; where it is swallowed (a bare
    `except:` or `except BaseException:` inside a loop) it is raised again every
    `_REPEAT` s, and after `GRACE` s a trace function raises it on every line of the
    learner's code, so that it escapes from the `except` block itself. Ctrl-C is forced
    out the same way. Where there is no SIGALRM (Windows) or off the main thread, or with
    no limit, the learner's code runs without one."""

    def __init__(self, seconds: float | None):
        self.left = seconds if seconds and seconds > 0 else None
        self.usable = (
            hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )
        self.depth = 0
        self.timed_out_at: float | None = None  # when the first _TimeUp was raised
        self.swallowed = False  # a _TimeUp or Ctrl-C had to be raised more than once
        self.interrupted = False
        self.forcing: type[BaseException] | None = None  # what the trace function raises
        self._traced: list = []  # the frames given our trace function
        self.learner_errors: list[BaseException] = []  # the exceptions the learner raised

    # -- forcing an exception out of code that swallows it ---------------------------
    def _tracer(self, frame, event, arg):
        if self.forcing is None or frame.f_code.co_filename == __file__:
            return None
        if event == "line":  # python unsets a trace function that raises: each alarm resets it
            raise self.forcing
        return self._tracer

    def _force(self, exc: type[BaseException], frame) -> None:
        if self.forcing is None:
            self._old_trace = sys.gettrace()
        self.forcing = exc
        self.swallowed = True
        sys.settrace(self._tracer)
        while frame is not None:  # the frames running now: trace them from their next line
            if frame.f_code.co_filename != __file__:
                frame.f_trace = self._tracer
                self._traced.append(frame)
            frame = frame.f_back

    def _unforce(self) -> None:
        if self.forcing is not None:
            self.forcing = None
            sys.settrace(self._old_trace)
            for frame in self._traced:  # leave no trace of ours behind (a debugger's stays)
                if frame.f_trace == self._tracer:
                    frame.f_trace = None
            self._traced.clear()

    def _on_alarm(self, signum, frame):
        if self.depth == 0:
            return
        now = time.monotonic()
        if self.timed_out_at is None:
            self.timed_out_at = now
            signal.setitimer(signal.ITIMER_REAL, _REPEAT, _REPEAT)  # until it gets out
        else:
            self.swallowed = True
            if now - self.timed_out_at > GRACE:
                self._force(_TimeUp, frame)
        raise _TimeUp

    def _on_interrupt(self, signum, frame):
        if self.depth and self.interrupted:  # a second Ctrl-C: the first was swallowed
            self._force(KeyboardInterrupt, frame)
        self.interrupted = True
        raise KeyboardInterrupt

    # -- running the learner's code -----------------------------------------------------
    def run(self, fn, *args, **kwargs):
        if self.timed_out_at is not None:  # the time is up: the checker must not go on
            raise _TimeUp
        if self.depth:  # the learner's code called it again: already timed
            return fn(*args, **kwargs)
        timed = self.usable and self.left is not None
        if timed:
            prev_alarm = signal.signal(signal.SIGALRM, self._on_alarm)
            prev_int = signal.getsignal(signal.SIGINT)
            if prev_int is signal.default_int_handler:
                signal.signal(signal.SIGINT, self._on_interrupt)
            outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, max(self.left, 1e-3))
        start = time.monotonic()
        self.depth = 1
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            self.learner_errors.append(e)
            raise
        finally:
            try:
                self.depth = 0
                if timed:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                self.depth = 0
                self._unforce()
                spent = time.monotonic() - start
                if self.left is not None:
                    self.left = max(self.left - spent, 0.0)
                if timed:
                    # a handler installed outside Python reads as None: the default is the best
                    signal.signal(
                        signal.SIGALRM, prev_alarm if prev_alarm is not None else signal.SIG_DFL
                    )
                    if prev_int is signal.default_int_handler:
                        signal.signal(signal.SIGINT, prev_int)
                    if outer_delay:  # someone else's timer was running: let it go on
                        left = max(outer_delay - spent, 1e-3)
                        signal.setitimer(signal.ITIMER_REAL, left, outer_interval)

    def wrap(self, fn):
        """`fn` as the checker sees it: timed, and its float64 results as float32."""

        @functools.wraps(fn)
        def learner(*args, **kwargs):
            return _match_dtypes(self.run(fn, *args, **kwargs), args, kwargs)

        return learner


def _reference_dtype(args, kwargs):
    """The floating dtype of the inputs the checker gave (float32 where none is floating)."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            return a.dtype
        if isinstance(a, torch.nn.Module):
            for p in a.parameters():
                if p.is_floating_point():
                    return p.dtype
    return torch.get_default_dtype()


def _match_dtypes(out, args, kwargs):
    """A learner's result with float64 tensors / arrays (float64 maths gives the same
    answer) put in the inputs' floating dtype, so that the checker compares like with like.
    Parameters are left alone: a checker may test that they are the model's own."""
    want = _reference_dtype(args, kwargs)
    if want == torch.float64:
        return out

    def conv(x):
        if isinstance(x, torch.nn.Parameter):
            return x
        if isinstance(x, torch.Tensor):
            return x.to(want) if x.dtype == torch.float64 else x
        if type(x) in (tuple, list):
            return type(x)(conv(v) for v in x)
        return x

    return conv(out)


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

        time_limit: seconds the learner's code may run in all (the checker's own work does
        not count) before it is reported as a function that never returns (None: no limit;
        also none on Windows or off the main thread).
        """
        clock = _Clock(time_limit)
        answer = tuple(clock.wrap(a) if _is_learner_code(a) else a for a in answer)
        try:
            self.checker(*answer)
        except _TimeUp:
            ok = False
            msg = (
                f"❌ Not yet: your function did not return within {time_limit:g} s: look for a "
                "loop that never ends (a `while` whose condition never becomes False, or a "
                "counter that is never updated), or work far bigger than the exercise needs."
            )
            if clock.swallowed:
                msg += (
                    " Your code also caught the time-out and went on: a bare `except:` (or "
                    "`except BaseException:`) inside a loop catches everything, even the "
                    "time limit and Ctrl-C. Catch only what you expect, e.g. `except "
                    "ValueError:`, and make sure the loop ends."
                )
            msg += f"\n\nNeed a nudge? Run `{self.name}.hint()`."
        except KeyboardInterrupt:
            if clock.swallowed:
                print(
                    "⏹ Interrupted. Your code caught the first Ctrl-C and went on: a bare "
                    "`except:` (or `except BaseException:`) inside a loop catches everything; "
                    "catch only what you expect, e.g. `except ValueError:`."
                )
            raise
        except CheckFailed as e:
            ok, msg = False, f"❌ Not yet: {e}\n\nNeed a nudge? Run `{self.name}.hint()`."
        except Exception as e:
            ok = False
            if _raised_by_learner(e, clock):  # the learner's code crashed inside the check
                msg = (
                    f"❌ Your code raised {type(e).__name__}: {e}\n\n"
                    f"Need a nudge? Run `{self.name}.hint()`."
                )
            else:  # the checker itself crashed on the answer: do not blame the learner
                msg = (
                    f"❌ The check could not handle your answer (the checker raised "
                    f"{type(e).__name__}: {e}). Your function ran without an error; make sure "
                    "it returns what the exercise asks (the type, shape and dtype of the "
                    "example). If it does, this is a bug in the check, not in your code."
                    f"\n\nNeed a nudge? Run `{self.name}.hint()`."
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


def _is_learner_code(a) -> bool:
    """A function (or other callable) the learner wrote; classes and modules are left as
    they are, so that a checker can still build and inspect them."""
    return callable(a) and not isinstance(a, (type, torch.nn.Module))


def _raised_by_learner(e: BaseException, clock: _Clock) -> bool:
    """Whether `e`, or an exception it was raised from, came out of the learner's code."""
    seen = set()
    while e is not None and id(e) not in seen:
        if any(e is mine for mine in clock.learner_errors):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


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
