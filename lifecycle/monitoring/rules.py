"""The alert rules on a monitoring trend: control limits, a two-sided tabular CUSUM and the
criterion thresholds (docs/monitoring.md, "Trends and alert rules").

Plain Python, no Django: numbers in, numbers out, so the rule can be checked by hand on a
constructed series. `lifecycle.monitoring.trends` reads the results and the criteria from the
database and calls `evaluate_series` once per metric and cohort.

The in-control spread of a batch comes from the baseline run, never from the batch being
judged (the p-chart idea): the baseline's bootstrap standard error, scaled to the batch's
size. A shifted batch therefore cannot widen its own limits.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The two-sided 95% normal quantile: a 95% interval is 2 x Z95 standard errors wide.
Z95 = 1.959963984540054

# Control limits are the baseline value plus or minus this many standard errors.
LIMIT_WIDTH = 3.0

CUSUM_UP, CUSUM_DOWN = "cusum_up", "cusum_down"
THRESHOLD_PREFIX = "threshold:"


@dataclass(frozen=True)
class Observation:
    """One value of a metric for one cohort: a batch's or the baseline's, with its 95%
    bootstrap interval and the number of records it was computed on."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None


@dataclass(frozen=True)
class Criterion:
    """A monitoring-gate criterion as the rules need it: `expression` names it in signals."""

    expression: str
    comparator: str  # ">=", ">", "<=" or "<"
    threshold: float
    required: bool


@dataclass(frozen=True)
class TrendPoint:
    """One batch of a trend with what the rules made of it."""

    batch: int  # batch number
    label: str  # the period, e.g. "2026-09-07"
    observation: Observation
    se: float | None  # None: no limits and no CUSUM step for this point
    lower: float | None  # control limits
    upper: float | None
    cusum_high: float
    cusum_low: float
    # A subset of (CUSUM_UP, CUSUM_DOWN), then "threshold:<expression>" per breached criterion.
    signals: tuple[str, ...]


def describe_signal(signal: str) -> str:
    """A signal in the committee's words: "CUSUM up", "CUSUM down" or "beyond threshold
    auroc >= 0.8"."""
    if signal == CUSUM_UP:
        return "CUSUM up"
    if signal == CUSUM_DOWN:
        return "CUSUM down"
    if signal.startswith(THRESHOLD_PREFIX):
        return "beyond threshold " + signal.removeprefix(THRESHOLD_PREFIX)
    return signal


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _interval_se(observation: Observation) -> float | None:
    """The standard error implied by a 95% interval; None without a usable interval (missing,
    not finite, or of zero width, which would make every difference infinitely significant)."""
    low, high = _finite(observation.ci_low), _finite(observation.ci_high)
    if low is None or high is None or high <= low:
        return None
    return (high - low) / (2 * Z95)


def standard_error(baseline: Observation, current: Observation) -> float | None:
    """The standard error of the difference between `current` and the baseline, under the
    baseline's behaviour.

    With the baseline's interval and both record counts: `se_0 * sqrt(1 + n_0 / n_t)`, the
    batch's `se_0 * sqrt(n_0 / n_t)` and the baseline's own `se_0` added in quadrature (the
    baseline is an estimate too). When the baseline has no usable interval (a proportion of
    exactly 0 or 1 bootstraps to a zero-width one), the batch's own interval stands in for the
    spread, scaled the same way: `se_t * sqrt(1 + n_t / n_0)`. None without any interval.
    """
    baseline_se = _interval_se(baseline)
    if baseline_se is not None and baseline.n and current.n:
        return baseline_se * math.sqrt(1 + baseline.n / current.n)
    current_se = _interval_se(current)
    if current_se is None:
        return None
    if baseline_se is not None:
        return math.hypot(current_se, baseline_se)
    if baseline.n and current.n:
        return current_se * math.sqrt(1 + current.n / baseline.n)
    return current_se


def beyond_threshold(observation: Observation, criterion: Criterion) -> bool:
    """Whether the batch's whole 95% interval fails the criterion (every value in it would).

    For `>=` the interval's high end must be below the threshold, for `>` at or below it; for
    `<=` the low end must be above it, for `<` at or above it. So an interval that touches the
    threshold of a `>=` or `<=` criterion still holds a passing value and is not beyond. Without
    an interval the value itself is compared; without a value, nothing is beyond.
    """
    low, high = _finite(observation.ci_low), _finite(observation.ci_high)
    if low is None or high is None:
        low = high = _finite(observation.value)
    if low is None or high is None:
        return False
    t = criterion.threshold
    match criterion.comparator:
        case ">=":
            return high < t
        case ">":
            return high <= t
        case "<=":
            return low > t
        case "<":
            return low >= t
    raise ValueError(f"unknown comparator {criterion.comparator!r}")


def evaluate_series(
    baseline: Observation,
    series: Sequence[tuple[int, str, Observation]],
    criteria: Sequence[Criterion],
    *,
    k: float,
    h: float,
) -> list[TrendPoint]:
    """Apply the rules to `series` (batch number, period label, observation) in period order.

    Per point: `se_t` (`standard_error`), control limits `x_0 ± 3 se_t`, the standardised
    difference `z_t = (x_t - x_0) / se_t`, and the tabular CUSUM
    `S+_t = max(0, S+_{t-1} + z_t - k)`, `S-_t = max(0, S-_{t-1} - z_t - k)` from 0, which
    signals up or down while the sum exceeds `h`. The sums are never reset after a signal (a
    drift stays out until the batches come back); a point without `z_t` (no value, no baseline
    value or no standard error) carries them forward unchanged and does not signal.
    """
    x0 = _finite(baseline.value)
    high = low = 0.0
    points = []
    for batch, label, observation in series:
        se = standard_error(baseline, observation)
        lower = upper = None
        if se is not None and x0 is not None:
            lower, upper = x0 - LIMIT_WIDTH * se, x0 + LIMIT_WIDTH * se
        x = _finite(observation.value)
        signals: list[str] = []
        if se is not None and x0 is not None and x is not None:
            z = (x - x0) / se
            high = max(0.0, high + z - k)
            low = max(0.0, low - z - k)
            # Only a point that moved the sums signals: a batch without a value for this
            # cohort says nothing new about it.
            if high > h:
                signals.append(CUSUM_UP)
            if low > h:
                signals.append(CUSUM_DOWN)
        signals += [
            THRESHOLD_PREFIX + c.expression for c in criteria if beyond_threshold(observation, c)
        ]
        points.append(
            TrendPoint(batch, label, observation, se, lower, upper, high, low, tuple(signals))
        )
    return points
