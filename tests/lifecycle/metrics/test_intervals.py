"""Intervals against their own estimates (issue 12, item 5).

The largest-minus-smallest group rate is biased upwards, so its percentile bootstrap interval
can lie wholly above the estimate and never covers a true difference of 0. The engine bounds
fairness differences with simultaneous bootstrap bounds on the pairwise group differences
(bootstrap.pairwise_interval) and says so next to any interval that still excludes its estimate.
These tests measure both on random data with known group rates.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from lifecycle.metrics import bootstrap
from lifecycle.metrics.bootstrap import (
    PAIRWISE_METHOD,
    Unit,
    pairwise_interval,
    percentile_interval,
)
from lifecycle.metrics.engine import _outside

from .helpers import engine_replicates, full_width_columns, jsonl, run_file

RESAMPLES = 1000
OUTSIDE = "lies outside its 95% interval"
FAIRNESS = ("demographic_parity_difference", "equalized_odds_difference")


def fairness_records(rng, n, tpr, fpr, prevalence=0.4):
    """n records in len(tpr) groups of random size, with the given per-group true and false
    positive rates."""
    tpr, fpr = np.asarray(tpr), np.asarray(fpr)
    group = rng.integers(0, tpr.size, n)
    label = rng.random(n) < prevalence
    prediction = rng.random(n) < np.where(label, tpr[group], fpr[group])
    return [
        {"label": int(y), "prediction": int(p), "groups": {"g": f"g{g}"}}
        for y, p, g in zip(label, prediction, group, strict=True)
    ]


def true_difference(key, tpr, fpr, prevalence=0.4):
    tpr, fpr = np.asarray(tpr), np.asarray(fpr)
    if key == "demographic_parity_difference":
        rate = prevalence * tpr + (1 - prevalence) * fpr
        return rate.max() - rate.min()
    return max(tpr.max() - tpr.min(), fpr.max() - fpr.min())


def bca_interval(stat, replicates, n):
    """The BCa interval the issue proposed, for comparison: z0 from the replicates, the
    acceleration from an exact jackknife over all n records (records with identical columns
    have identical leave-one-out values, so it runs over the distinct column rows)."""
    value = stat.value
    p0 = (np.sum(replicates < value) + 0.5 * np.sum(replicates == value)) / replicates.size
    z0 = norm.ppf(np.clip(p0, 0.5 / replicates.size, 1 - 0.5 / replicates.size))
    # every record has a group here, so the fairness unit is all n records
    columns = full_width_columns(stat, Unit(key="all", indices=np.arange(n)), n)
    names = list(columns)
    rows = np.stack([columns[name] for name in names], axis=1)
    kinds, counts = np.unique(rows, axis=0, return_counts=True)
    totals = rows.sum(axis=0)
    left_out = stat.combine({name: totals[i] - kinds[:, i] for i, name in enumerate(names)})
    spread = np.sum(counts * left_out) / n - left_out
    scale = np.sum(counts * spread**2)
    a = np.sum(counts * spread**3) / (6 * scale**1.5) if scale > 0 else 0.0
    z = norm.ppf([0.025, 0.975])
    levels = norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    low, high = np.percentile(replicates, 100 * levels)
    return low, high


# (records, tpr per group, fpr per group): no disparity (the percentile bootstrap's worst case)
# at several sizes and group counts, then real disparities.
SCENARIOS = [
    (300, [0.7, 0.7], [0.2, 0.2]),
    (1000, [0.8] * 3, [0.1] * 3),
    (3000, [0.6] * 5, [0.3] * 5),
    (800, [0.9] * 2, [0.05] * 2),
    (1000, [0.7, 0.8], [0.2, 0.2]),
    (3000, [0.6, 0.6, 0.75, 0.6], [0.3, 0.3, 0.3, 0.35]),
]
TRIALS = 8


@pytest.fixture(scope="module")
def measured():
    """Per trial and fairness metric: the estimate, the truth and the three intervals."""
    rows = []
    for scenario, (n, tpr, fpr) in enumerate(SCENARIOS):
        for trial in range(TRIALS):
            rng = np.random.default_rng([scenario, trial])
            records = fairness_records(rng, n, tpr, fpr)
            for key in FAIRNESS:
                stat, replicates = engine_replicates(
                    records, key, resamples=RESAMPLES, seed=trial, attribute="g"
                )
                percentile = percentile_interval(replicates)[:2]
                pairwise = pairwise_interval(stat.component_estimates, stat.component_replicates)
                rows.append(
                    {
                        "equal": len(set(tpr)) == len(set(fpr)) == 1,
                        "value": stat.value,
                        "truth": true_difference(key, tpr, fpr),
                        "percentile": percentile,
                        "bca": bca_interval(stat, replicates, n),
                        "pairwise": pairwise,
                    }
                )
    return rows


def rate(rows, method, test):
    return sum(test(row, *row[method]) for row in rows) / len(rows)


def excludes(row, low, high):
    return not low <= row["value"] <= high


def covers(row, low, high):
    return low <= row["truth"] <= high


def test_the_estimate_lies_inside_its_pairwise_interval_where_percentile_and_bca_miss_it(
    measured,
):
    old = rate(measured, "percentile", excludes)
    bca = rate(measured, "bca", excludes)
    new = rate(measured, "pairwise", excludes)
    # 96 intervals on random data: the percentile interval missed its own estimate in some
    # (about 1-5% where groups do not differ), and BCa in as many: with an acceleration near 0
    # it contains the estimate exactly when the percentile interval does (|z0| < 1.96).
    assert old > 0, old
    assert bca >= old / 2, (old, bca)
    assert new == 0, new


def test_pairwise_intervals_cover_a_difference_of_zero_where_percentile_ones_never_do(
    measured,
):
    equal = [row for row in measured if row["equal"]]
    unequal = [row for row in measured if not row["equal"]]
    # With equal rates the replicates of max - min are all above 0: the percentile interval
    # cannot contain the true 0. The simultaneous bounds are conservative, never below 95% by
    # more than the noise of 64 trials.
    assert rate(equal, "percentile", covers) == 0
    assert rate(equal, "pairwise", covers) >= 0.9
    assert rate(unequal, "pairwise", covers) >= 0.85


def test_the_warning_is_there_exactly_when_an_interval_excludes_its_estimate():
    # ECE is biased upwards under resampling (noise adds calibration error), so on
    # well-calibrated scores its percentile interval often lies above its estimate.
    outside = inside = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n = [150, 400, 1200][seed % 3]
        score = rng.random(n)
        records = [
            {
                "label": int(rng.random() < s),
                "prediction": int(s > 0.5),
                "score": round(float(s), 4),
                "groups": {"sex": str(rng.choice(["F", "M"]))},
            }
            for s in score
        ]
        result = run_file(
            jsonl(records),
            metrics=["ece", "recall", *FAIRNESS],
            resamples=300,
            seed=seed,
        )
        entries = [
            *result["metrics"].values(),
            *(
                e
                for groups in result["groups"].values()
                for g in groups.values()
                for e in g.values()
            ),
            *(e for f in result["fairness"].values() for e in f.values()),
        ]
        for entry in entries:
            if entry["ci_low"] is None:
                continue
            excluded = not entry["ci_low"] <= entry["value"] <= entry["ci_high"]
            warned = any(OUTSIDE in w for w in entry.get("warnings", []))
            assert excluded == warned, entry
            outside += excluded
            inside += not excluded
        for entry in (e for f in result["fairness"].values() for e in f.values()):
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
        noted = [w for w in result["warnings"] if OUTSIDE in w]
        assert len(noted) == sum(OUTSIDE in w for e in entries for w in e.get("warnings", []))
    assert outside > 0 and inside > 0, (outside, inside)


def test_the_warning_says_what_lies_where_in_plain_words():
    (note,) = _outside(0.0168, 0.0178, 0.1195, "percentile bootstrap")
    assert note == (
        "the estimate 0.0168 lies outside its 95% interval 0.0178–0.1195 (percentile "
        "bootstrap): resampling shifts this metric, so the interval is unreliable here"
    )
    # a bound that rounds to the estimate gets the digits that tell them apart
    (note,) = _outside(0.84, 0.8400012, 0.9, "percentile bootstrap")
    assert "the estimate 0.84 lies outside its 95% interval 0.840001–0.9" in note
    assert _outside(0.5, 0.5, 0.5, "percentile bootstrap") == []
    assert _outside(0.5 + 1e-15, 0.4, 0.5, "percentile bootstrap") == []


def test_fairness_intervals_are_deterministic_and_independent_of_chunks_and_threads(
    monkeypatch,
):
    records = fairness_records(np.random.default_rng(3), 400, [0.7, 0.75, 0.8], [0.2] * 3)
    key = "equalized_odds_difference"
    stat, _ = engine_replicates(records, key, resamples=200, seed=4, attribute="g")
    again, _ = engine_replicates(records, key, resamples=200, seed=4, attribute="g")
    monkeypatch.setattr(bootstrap, "MAX_CHUNK_RESAMPLES", 7)
    monkeypatch.setattr(bootstrap, "PARALLEL_ELEMENTS", 1)
    chunked, _ = engine_replicates(records, key, resamples=200, seed=4, attribute="g")
    np.testing.assert_array_equal(stat.component_replicates, again.component_replicates)
    np.testing.assert_array_equal(stat.component_replicates, chunked.component_replicates)
    # tpr and fpr differences of the 3 pairs of groups
    assert stat.component_replicates.shape == (200, 6)


def test_the_run_states_the_method_per_metric_and_one_group_gives_zero():
    records = [
        {"label": i % 2, "prediction": i % 3 == 0, "score": 0.5, "groups": {"site": "A"}}
        for i in range(60)
    ]
    result = run_file(jsonl(records), metrics=["recall", "ece", *FAIRNESS], resamples=50, seed=1)
    intervals = result["provenance"]["intervals"]
    assert intervals == {
        "recall": "percentile bootstrap",
        "ece": "percentile bootstrap",
        "demographic_parity_difference": PAIRWISE_METHOD,
        "equalized_odds_difference": PAIRWISE_METHOD,
    }
    parity = result["fairness"]["site"]["demographic_parity_difference"]
    assert (parity["value"], parity["ci_low"], parity["ci_high"]) == (0.0, 0.0, 0.0)
    only = run_file(jsonl(records), metrics=list(FAIRNESS), resamples=50)
    assert only["provenance"]["ci_method"] == PAIRWISE_METHOD


def test_pairwise_interval_edge_cases():
    assert pairwise_interval(np.empty(0), np.empty((10, 0))) == (0.0, 0.0)
    # components that never move: the interval is the estimate
    assert pairwise_interval(np.array([0.2, -0.1]), np.tile([0.2, -0.1], (50, 1))) == (0.2, 0.2)
    # a resample without one of the groups (NaN) is left out, and bounds stay within 0..1
    replicates = np.array([[0.9], [np.nan], [0.1], [0.99], [0.5]])
    low, high = pairwise_interval(np.array([0.95]), replicates)
    assert 0.0 <= low <= 0.95 <= high == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(2, 40),
    st.integers(0, 2**32 - 1),
)
def test_pairwise_interval_always_contains_the_estimate(components, resamples, seed):
    rng = np.random.default_rng(seed)
    estimates = rng.uniform(-1, 1, components)
    replicates = estimates + rng.normal(0, rng.uniform(0, 0.3), (resamples, components))
    replicates[rng.random(replicates.shape) < 0.1] = np.nan
    low, high = pairwise_interval(estimates, np.clip(replicates, -1, 1))
    value = float(np.max(np.abs(estimates)))
    assert 0.0 <= low <= value <= high <= 1.0
