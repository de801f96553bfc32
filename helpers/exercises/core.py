"""The core of the exercises: `Exercise` (`ex.check(answer)`, `ex.hint()`, `ex.solution()`)
and the checks that every notebook's checkers share.

A check tests what the answer *does* (shapes, values, gradients, an optimizer step), never
how it is written. It prints a verdict and returns True or False, so a notebook can also
`assert` it. Each notebook's exercises live in their own module beside this one
(`nb01_patches` ... `nb08_practices`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from IPython.display import Markdown, display

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
