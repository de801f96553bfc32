"""Comparing runs over seeds: the spread, a paired test or an interval, and the words a
verdict may use.

With 3-5 seeds a difference of means says little on its own. `compare(a, b)` gives the mean
difference a - b with its 95% interval and p value (paired when the runs share seeds, Welch's
test otherwise) and words it: "higher" or "lower" only when the interval excludes 0,
otherwise "no detectable difference" with the number of seeds. The t distribution comes from
SciPy (`scipy.stats`), not from code of our own.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

import numpy as np
from scipy import stats


class Comparison(NamedTuple):
    diff: float  # mean of a - mean of b (paired: mean of the differences)
    low: float  # 95% interval of diff
    high: float
    p: float  # two-sided
    wins: int  # seeds where a > b (paired), or -1 for unpaired runs
    n: int  # seeds per side
    paired: bool

    @property
    def word(self) -> str:
        """'higher', 'lower' or 'no detectable difference' (the interval decides)."""
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "no detectable difference"

    def short(self, digits: int = 1) -> str:
        """'+2.1 [-1.0, +5.2]': the difference and its 95% interval, for a table cell."""
        d, lo, hi = (fixed(v, digits, sign=True) for v in (self.diff, self.low, self.high))
        return f"{d} [{lo}, {hi}]"

    def text(self, unit: str = "", digits: int = 1, pairs: str = "seeds") -> str:
        """One line: 'difference +2.1 points (95% CI -1.0 to +5.2 points, paired t p = 0.17,
        a ahead on 3 of 5 seeds)'; `pairs` names what is paired (seeds, images)."""

        def f(v):
            return fixed(v, digits, sign=True)

        test = "paired t" if self.paired else "Welch t"
        wins = f", a ahead on {self.wins} of {self.n} {pairs}" if self.wins >= 0 else ""
        return (
            f"difference {f(self.diff)}{unit} (95% CI {f(self.low)} to {f(self.high)}{unit}, "
            f"{test} p = {self.p:.2g}{wins})"
        )


def fixed(x: float, digits: int = 1, sign: bool = False) -> str:
    """x with `digits` decimals, a half rounded away from zero even where float arithmetic
    left it a hair below (93.85 computed as 93.8499999...): the same number prints the same
    however it was computed (the mean of percentages or 100 x the mean of fractions)."""
    q = Decimal(repr(round(float(x), 9))).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP)
    return f"{q:+}" if sign else f"{q}"


def _values(x, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).ravel()
    if v.size < 2:
        raise ValueError(f"{name}: a comparison needs at least 2 seeds, got {v.size}.")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or infinity: a diverged run cannot be compared.")
    return v


def spread(x, digits: int = 1) -> str:
    """'85.1 ± 2.9' (mean ± sample standard deviation over seeds)."""
    v = _values(x, "values")
    return f"{fixed(v.mean(), digits)} ± {fixed(v.std(ddof=1), digits)}"


def compare(a, b, paired: bool = True) -> Comparison:
    """a - b over seeds. `paired=True` when a[i] and b[i] share seed i (same data order and
    initialisation apart from what is compared): a t interval on the differences. Otherwise
    Welch's interval (unequal variances)."""
    a, b = _values(a, "a"), _values(b, "b")
    if paired:
        if a.size != b.size:
            raise ValueError(
                f"a paired comparison needs the same seeds on both sides, got {a.size} and "
                f"{b.size}: pass paired=False for unpaired runs."
            )
        d = a - b
        n = d.size
        se = d.std(ddof=1) / math.sqrt(n)
        t = stats.t.ppf(0.975, n - 1)
        if se == 0:
            p = 1.0 if d.mean() == 0 else 0.0
        else:
            p = float(stats.ttest_rel(a, b).pvalue)
        return Comparison(
            float(d.mean()),
            float(d.mean() - t * se),
            float(d.mean() + t * se),
            p,
            int((d > 0).sum()),
            n,
            True,
        )
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return Comparison(diff, diff, diff, 1.0 if diff == 0 else 0.0, -1, a.size, False)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    t = stats.t.ppf(0.975, dof)
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison(diff, float(diff - t * se), float(diff + t * se), p, -1, a.size, False)
