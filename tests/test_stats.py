"""helpers.stats: the seed comparisons' intervals agree with SciPy and word the result by them."""

import pytest
from scipy import stats as sps

from helpers.stats import compare, spread


def test_paired_interval_and_words():
    a, b = [85.0, 86.0, 84.0, 87.0, 85.5], [80.0, 82.0, 81.0, 83.0, 80.5]
    c = compare(a, b)
    assert c.paired and c.n == 5 and c.wins == 5
    assert c.diff == pytest.approx(4.2)
    assert c.p == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert c.low > 0 and c.word == "higher"
    assert compare(b, a).word == "lower"
    assert "paired t" in c.text(" points")


def test_overlapping_runs_are_no_detectable_difference():
    # 06's patch classification vs CLS: means 4.9 points apart, but three noisy seeds
    c = compare([84.0, 82.4, 80.8], [82.9, 77.5, 72.1], paired=False)
    assert c.low < 0 < c.high and c.word == "no detectable difference"
    assert c.p == pytest.approx(
        sps.ttest_ind([84.0, 82.4, 80.8], [82.9, 77.5, 72.1], equal_var=False).pvalue
    )


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        compare([1.0], [2.0])
    with pytest.raises(ValueError, match="same seeds"):
        compare([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        compare([1.0, float("nan")], [1.0, 2.0])
    assert spread([85.0, 86.0, 84.0]) == "85.0 ± 1.0"


def test_the_same_number_prints_the_same_however_it_was_computed():
    from helpers.stats import fixed

    a = 100 * ((0.9385 + 0.9385) / 2)  # 100 x the mean of fractions
    b = (93.85 + 93.85) / 2  # the mean of percentages
    assert fixed(a) == fixed(b) == "93.9"
    assert fixed(-0.25) == "-0.3" and fixed(2.0, 2) == "2.00" and fixed(0.5, 0, sign=True) == "+1"
    assert spread([93.3, 94.4]) == f"{fixed(93.85)} ± 0.8"


def test_short_form_for_a_table_cell():
    c = compare([85.0, 86.0, 84.0, 87.0, 85.5], [80.0, 82.0, 81.0, 83.0, 80.5])
    assert c.short() == f"+4.2 [{c.low:+.1f}, {c.high:+.1f}]"
