"""The alert rules on constructed series, checked against hand-computed sums.

Most series use a baseline centred on 0 with the interval ±Z95 / 2 on 300 records: its own
standard error is exactly 0.5, so the standard error of the difference for a batch of 100
records is 0.5 x sqrt(1 + 300 / 100) = 1, a batch of 100 records has z = its value and the
CUSUM steps are exact. `H` is the plan's default decision interval (test_trends.py checks
the plan uses it).
"""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.monitoring.rules import (
    Z95,
    Criterion,
    Observation,
    beyond_threshold,
    describe_signal,
    evaluate_series,
    standard_error,
)

ROOT = Path(__file__).resolve().parents[3]
UNIT = Observation(0.0, -Z95 / 2, Z95 / 2, 300)  # standard error of a difference 1 at 100 records
H = 5.0


def batch(value, n=100, ci=None):
    low, high = ci if ci else (None, None)
    return Observation(value, low, high, n)


def series(*values, n=100):
    return [
        (i, f"2026-09-{i:02d}", v if isinstance(v, Observation) else batch(v, n))
        for i, v in enumerate(values, start=1)
    ]


def signalling(points, signal):
    return [p.batch for p in points if signal in p.signals]


def se_of(width):
    """The standard error a 95% interval of this width stands for."""
    return width / (2 * Z95)


def test_it_scales_the_baselines_standard_error_and_adds_the_baselines_own():
    baseline = Observation(0.85, 0.83, 0.87, 900)
    se0 = se_of(0.04)
    # A batch of 300: se0 x sqrt(900 / 300) for the batch, se0 for the baseline, in
    # quadrature: se0 x sqrt(1 + 3) = 2 se0.
    assert standard_error(baseline, batch(0.8, n=300)) == pytest.approx(2 * se0)
    # A batch as large as the baseline: the two estimates weigh the same, sqrt(2) se0.
    assert standard_error(baseline, batch(0.8, n=900)) == pytest.approx(math.sqrt(2) * se0)
    # A batch of 60 (a fifteenth): sqrt(1 + 15) = 4.
    assert standard_error(baseline, batch(0.8, n=60)) == pytest.approx(4 * se0)
    # The batch's own (wider) interval is not used while the baseline has one.
    assert standard_error(baseline, batch(0.8, n=300, ci=(0.5, 0.9))) == pytest.approx(2 * se0)


def test_a_small_baseline_widens_the_limits_of_every_batch():
    # The same batch of 100 against a baseline of 100 and of 10,000 records with the same
    # precision per record (se0 x sqrt(n0) fixed): the small baseline's own error counts.
    small = Observation(0.85, 0.85 - 0.02 * Z95, 0.85 + 0.02 * Z95, 100)
    large = Observation(0.85, 0.85 - 0.002 * Z95, 0.85 + 0.002 * Z95, 10_000)
    assert standard_error(small, batch(0.8)) == pytest.approx(0.02 * math.sqrt(2))
    assert standard_error(large, batch(0.8)) == pytest.approx(0.002 * math.sqrt(101))
    # A batch at 0.785: below the large baseline's lower limit (0.85 - 3 x 0.0201 = 0.790).
    # Against the small one, the batch's share alone (0.02) would put the limit at 0.79 and
    # raise a false alarm; with the baseline's own error added the limit is 0.765.
    (on_small,) = evaluate_series(small, series(0.785), [], k=0.5, h=H)
    (on_large,) = evaluate_series(large, series(0.785), [], k=0.5, h=H)
    assert on_small.lower == pytest.approx(0.85 - 3 * 0.02 * math.sqrt(2))
    assert on_small.lower < 0.785 < on_large.lower


@pytest.mark.parametrize(
    "baseline",
    [
        Observation(0.85, None, None, 100),  # no interval
        Observation(0.85, 0.85, 0.85, 100),  # an interval of zero width
        Observation(0.85, math.nan, 0.87, 100),  # an interval that is not a number
    ],
    ids=["no-interval", "zero-width", "not-finite"],
)
def test_without_the_baselines_interval_the_batchs_own_is_scaled_the_same_way(baseline):
    # se_t x sqrt(1 + n_t / n_0) = se_t x sqrt(1 + 300 / 100) = 2 se_t.
    assert standard_error(baseline, batch(0.8, n=300, ci=(0.7, 0.9))) == pytest.approx(
        2 * se_of(0.2)
    )
    # Without either record count, the batch's own standard error alone.
    assert standard_error(baseline, batch(0.8, n=None, ci=(0.7, 0.9))) == pytest.approx(se_of(0.2))
    no_count = Observation(baseline.value, baseline.ci_low, baseline.ci_high, None)
    assert standard_error(no_count, batch(0.8, n=300, ci=(0.7, 0.9))) == pytest.approx(se_of(0.2))
    # No interval anywhere: no standard error.
    assert standard_error(baseline, batch(0.8, n=300)) is None


def test_with_a_record_count_missing_the_two_intervals_add_in_quadrature():
    # Widths 0.08 and 0.06 (a 3-4-5 triangle): the difference has the width 0.10.
    baseline = Observation(0.85, 0.81, 0.89, 1000)
    assert standard_error(baseline, batch(0.8, n=None, ci=(0.77, 0.83))) == pytest.approx(
        se_of(0.10)
    )
    without_n = Observation(0.85, 0.81, 0.89, None)
    assert standard_error(without_n, batch(0.8, n=250, ci=(0.77, 0.83))) == pytest.approx(
        se_of(0.10)
    )
    # The batch's interval is needed when the baseline's cannot be scaled.
    assert standard_error(baseline, batch(0.8, n=None)) is None
    assert standard_error(without_n, batch(0.8, n=250)) is None


def test_the_control_limits_are_three_standard_errors_and_widen_for_small_batches():
    points = evaluate_series(UNIT, series(0.0, 0.0, n=20) + series(0.0), [], k=0.5, h=H)
    assert (points[0].lower, points[0].upper) == (-6.0, 6.0)  # 0.5 x sqrt(1 + 300 / 20) = 2
    assert (points[2].lower, points[2].upper) == (-3.0, 3.0)
    shifted = Observation(0.8, 0.8 - 0.01 * Z95, 0.8 + 0.01 * Z95, 300)
    (point,) = evaluate_series(shifted, series(0.8, n=100), [], k=0.5, h=H)
    assert point.se == pytest.approx(0.02)  # 0.01 x sqrt(1 + 3)
    assert point.lower == pytest.approx(0.74) and point.upper == pytest.approx(0.86)


def test_the_cusum_signals_up_at_the_batch_where_the_sum_exceeds_h_not_before():
    # z = 0, 1.5 six times, 0 with k = 0.5: S+ = 0, 1, 2, 3, 4, 5, 6, 5.5.
    values = series(0.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 0.0)
    points = evaluate_series(UNIT, values, [], k=0.5, h=H)
    assert [p.se for p in points] == [1.0] * 8
    assert [p.cusum_high for p in points] == [0, 1, 2, 3, 4, 5, 6, 5.5]
    assert [p.cusum_low for p in points] == [0] * 8
    # S+ = 5 equals h at batch 6: not yet. Batch 7 exceeds it; no reset, so batch 8 (back
    # at the baseline) still signals.
    assert signalling(points, "cusum_up") == [7, 8]
    assert signalling(points, "cusum_down") == []
    assert points[6].signals == ("cusum_up",)


def test_the_cusum_signals_down_the_same_way():
    points = evaluate_series(UNIT, series(-1.5, -1.5, -1.5, -1.5, -1.5, -1.5), [], k=0.5, h=H)
    assert [p.cusum_low for p in points] == [1, 2, 3, 4, 5, 6]
    assert [p.cusum_high for p in points] == [0] * 6
    assert signalling(points, "cusum_down") == [6]
    assert signalling(points, "cusum_up") == []


def test_the_cusum_forgets_small_deviations_within_the_allowance():
    # z below k never accumulates; a deviation above comes back down towards 0.
    points = evaluate_series(UNIT, series(0.4, -0.4, 3.0, 0.0, 0.0), [], k=0.5, h=H)
    assert [p.cusum_high for p in points] == [0, 0, 2.5, 2.0, 1.5]
    assert [p.cusum_low for p in points] == [0, 0, 0, 0, 0]
    assert not any(p.signals for p in points)


def test_k_and_h_come_from_the_plan():
    values = series(1.5, 1.5, 1.5, 1.5, 1.5, 1.5)
    # k = 0.5: S+ = 1 ... 6.
    assert signalling(evaluate_series(UNIT, values, [], k=0.5, h=H), "cusum_up") == [6]
    assert signalling(evaluate_series(UNIT, values, [], k=0.5, h=4), "cusum_up") == [5, 6]
    # k = 1: steps of 0.5, S+ = 0.5 ... 3 never exceeds 5.
    assert signalling(evaluate_series(UNIT, values, [], k=1.0, h=H), "cusum_up") == []
    # k = 1, h = 2: S+ = 2 at batch 4 is a tie, batch 5 exceeds.
    assert signalling(evaluate_series(UNIT, values, [], k=1.0, h=2), "cusum_up") == [5, 6]


def test_points_without_a_standard_error_or_value_carry_the_sums_and_do_not_signal():
    no_se = Observation(40.0, None, None, None)  # no n, no interval: nothing to scale
    no_result = Observation(None, None, None, None)
    criterion = Criterion("m <= 10", "<=", 10.0, True)
    points = evaluate_series(
        UNIT,
        series(2.5, no_se, 2.5, no_result, 2.5, no_se, no_result, 0.0),
        [criterion],
        k=0.5,
        h=H,
    )
    assert [p.cusum_high for p in points] == [2, 2, 4, 4, 6, 6, 6, 5.5]
    assert [p.se for p in points] == [1.0, None, 1.0, None, 1.0, None, None, 1.0]
    assert points[1].lower is None and points[1].upper is None
    # Batch 5 exceeds h. Batches 6 and 7 carry S+ = 6 but say nothing new about the drift, so
    # they do not signal it; batch 8 (back at the baseline, S+ = 5.5) does again.
    assert signalling(points, "cusum_up") == [5, 8]
    # A point without a standard error can still breach a threshold on its own value.
    assert [p.signals for p in points[5:7]] == [("threshold:m <= 10",), ()]
    assert points[1].signals == ("threshold:m <= 10",)


def test_without_a_baseline_value_there_are_no_limits_and_no_cusum():
    baseline = Observation(None, None, None, None)
    criterion = Criterion("auroc >= 0.8", ">=", 0.8, True)
    points = evaluate_series(
        baseline,
        series(batch(0.7, ci=(0.65, 0.75)), batch(0.9, ci=(0.85, 0.95))),
        [criterion],
        k=0.5,
        h=H,
    )
    assert [(p.lower, p.upper) for p in points] == [(None, None), (None, None)]
    assert [p.cusum_high + p.cusum_low for p in points] == [0, 0]
    # The threshold rule needs only the batch.
    assert [p.signals for p in points] == [("threshold:auroc >= 0.8",), ()]


@pytest.mark.parametrize(
    ("comparator", "threshold", "interval", "beyond"),
    [
        (">=", 0.8, (0.70, 0.79), True),
        (">=", 0.8, (0.70, 0.80), False),  # touches the threshold: a passing value is inside
        (">=", 0.8, (0.75, 0.85), False),
        (">", 0.8, (0.70, 0.80), True),  # its best value fails "> 0.8"
        (">", 0.8, (0.70, 0.81), False),
        ("<=", 0.1, (0.11, 0.20), True),
        ("<=", 0.1, (0.10, 0.20), False),
        ("<=", 0.1, (0.05, 0.15), False),
        ("<", 0.1, (0.10, 0.20), True),
        ("<", 0.1, (0.09, 0.20), False),
    ],
)
def test_a_threshold_is_breached_when_the_whole_interval_fails(
    comparator, threshold, interval, beyond
):
    criterion = Criterion(f"m {comparator} {threshold:g}", comparator, threshold, True)
    middle = sum(interval) / 2
    assert beyond_threshold(batch(middle, ci=interval), criterion) is beyond


@pytest.mark.parametrize(
    ("comparator", "value", "beyond"),
    [
        (">=", 0.79, True),
        (">=", 0.8, False),
        (">", 0.8, True),
        ("<=", 0.8, False),
        ("<=", 0.81, True),
        ("<", 0.8, True),
        ("<", 0.79, False),
    ],
)
def test_without_an_interval_the_value_is_compared(comparator, value, beyond):
    criterion = Criterion(f"m {comparator} 0.8", comparator, 0.8, False)
    assert beyond_threshold(batch(value), criterion) is beyond
    # Half an interval is no interval.
    assert beyond_threshold(Observation(value, value - 1, None, 10), criterion) is beyond


def test_without_a_value_nothing_is_beyond():
    for comparator in (">=", ">", "<=", "<"):
        criterion = Criterion(f"m {comparator} 0.8", comparator, 0.8, True)
        assert beyond_threshold(Observation(None, None, None, 50), criterion) is False
        assert beyond_threshold(Observation(math.nan, None, None, 50), criterion) is False


def test_each_breached_criterion_is_its_own_signal_after_the_cusum():
    criteria = [
        Criterion("auroc >= 0.8", ">=", 0.8, True),
        Criterion("auroc >= 0.7", ">=", 0.7, False),
        Criterion("auroc <= 0.99", "<=", 0.99, False),
    ]
    baseline = Observation(0.9, 0.9 - 0.01 * Z95, 0.9 + 0.01 * Z95, 1200)
    points = evaluate_series(
        baseline,
        [(1, "2026-09-07", Observation(0.76, 0.74, 0.78, 400))],
        criteria,
        k=0.5,
        h=H,
    )
    # se = 0.01 x sqrt(1 + 1200 / 400) = 0.02, z = -7: S- = 6.5 > 5 at once; the interval is
    # below 0.8 but not below 0.7.
    assert points[0].signals == ("cusum_down", "threshold:auroc >= 0.8")
    assert points[0].cusum_low == pytest.approx(6.5)


def test_signals_in_words():
    assert describe_signal("cusum_up") == "CUSUM up"
    assert describe_signal("cusum_down") == "CUSUM down"
    assert describe_signal("threshold:auroc >= 0.8") == "beyond threshold auroc >= 0.8"


def test_the_rules_are_plain_python():
    # Checked in a fresh interpreter: importing the rules loads nothing of Django.
    code = (
        "import sys, lifecycle.monitoring.rules; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'numpy')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
