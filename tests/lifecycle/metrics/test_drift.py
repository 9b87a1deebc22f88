"""Drift statistics (PRODUCT.md, "Monitoring") against a straightforward re-implementation of
PSI and against scipy for the others, on random data with ties, empty bins, a single distinct
value and one- or two-record samples; then the file-level rules: which fields and attributes
count, missing values, strict JSON, and refusals that name the file."""

import bisect
import io
import json
import math
import os
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from lifecycle.metrics import Limits, RecordError, parse_records
from lifecycle.metrics.drift import (
    NUMERIC_FIELDS,
    DriftFileError,
    drift,
    drift_files,
    drift_notes,
    format_text,
    group_drift,
    numeric_drift,
)

from .helpers import csv_bytes, jsonl

pytestmark = pytest.mark.engine

FAST = settings(
    max_examples=int(os.environ.get("METRICS_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- the reference: PRODUCT.md's words, one value at a time ------------------------------------


def floored(count: int, total: int) -> float:
    return max(count / total, 0.0001)


def psi_by_definition(baseline: list[float], current: list[float]) -> float:
    deciles = np.quantile(np.array(baseline), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    edges = sorted(set(deciles.tolist()))
    base = Counter(bisect.bisect_right(edges, x) for x in baseline)
    cur = Counter(bisect.bisect_right(edges, x) for x in current)
    total = 0.0
    for i in range(len(edges) + 1):
        b, c = floored(base[i], len(baseline)), floored(cur[i], len(current))
        total += (c - b) * math.log(c / b)
    return total


def group_psi_by_definition(baseline: list[str], current: list[str]) -> float:
    base, cur = Counter(baseline), Counter(current)
    total = 0.0
    for category in set(base) | set(cur):
        b, c = floored(base[category], len(baseline)), floored(cur[category], len(current))
        total += (c - b) * math.log(c / b)
    return total


def close(actual: float, expected: float) -> None:
    assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12)


def assert_matches_scipy(result: dict, baseline: list[float], current: list[float]) -> None:
    close(result["psi"]["value"], psi_by_definition(baseline, current))
    with warnings.catch_warnings():  # scipy's note when it falls back to the asymptotic p-value
        warnings.simplefilter("ignore", RuntimeWarning)
        ks = stats.ks_2samp(baseline, current)
    # Sorted first or not, scipy computes on the same values: the very same numbers.
    assert result["ks_statistic"] == {"value": float(ks.statistic)}
    assert result["ks_pvalue"] == {"value": float(ks.pvalue)}
    assert result["wasserstein"] == {"value": float(stats.wasserstein_distance(baseline, current))}


# --- numeric fields ------------------------------------------------------------------------------

ties = st.integers(-3, 3).map(float)  # a small range: many ties, bins that collapse
spread = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def samples(draw):
    values = draw(st.sampled_from([ties, spread]))
    return draw(st.lists(values, min_size=1, max_size=60))


@FAST
@given(samples(), samples())
def test_numeric_drift_matches_the_definition_and_scipy(baseline, current):
    result = numeric_drift(np.array(baseline), np.array(current))
    assert_matches_scipy(result, baseline, current)
    json.dumps(result, allow_nan=False)


@FAST
@given(samples(), st.integers(-3, 3), st.integers(1, 40))
def test_an_empty_bin_is_floored_not_infinite(baseline, constant, size):
    """The current file all in one bin leaves the other bins empty on one side."""
    current = [float(constant)] * size
    result = numeric_drift(np.array(baseline), np.array(current))
    assert_matches_scipy(result, baseline, current)


@FAST
@given(st.integers(-3, 3), st.integers(1, 30), samples())
def test_a_baseline_with_a_single_distinct_value_has_one_edge(constant, size, current):
    baseline = [float(constant)] * size
    result = numeric_drift(np.array(baseline), np.array(current))
    assert_matches_scipy(result, baseline, current)


@pytest.mark.parametrize(
    ("baseline", "current"),
    [([0.5], [0.5]), ([0.5], [0.7]), ([0.1, 0.9], [0.3]), ([1.0, 2.0], [2.0, 3.0])],
)
def test_one_or_two_records(baseline, current):
    assert_matches_scipy(numeric_drift(np.array(baseline), np.array(current)), baseline, current)


def test_a_worked_example():
    """Baseline 1..10: deciles 1.9, 2.8, ..., 9.1, one value per bin. Current all 10.0: the
    last bin holds everything, the nine others are floored at 0.0001."""
    result = numeric_drift(np.arange(1.0, 11.0), np.full(5, 10.0))
    expected = 9 * (0.0001 - 0.1) * math.log(0.0001 / 0.1) + (1 - 0.1) * math.log(1 / 0.1)
    close(result["psi"]["value"], expected)
    assert result["ks_statistic"]["value"] == 0.9
    assert result["wasserstein"]["value"] == pytest.approx(4.5)


def test_identical_samples_do_not_drift():
    values = np.random.default_rng(3).normal(size=500)
    result = numeric_drift(values, values.copy())
    assert result["psi"]["value"] == 0.0
    assert result["ks_statistic"]["value"] == 0.0
    assert result["ks_pvalue"]["value"] == 1.0
    assert result["wasserstein"]["value"] == 0.0


def test_an_empty_side_or_a_non_finite_value_gives_null_with_a_reason():
    empty = numeric_drift(np.array([]), np.array([1.0]))
    assert {key: entry["value"] for key, entry in empty.items()} == dict.fromkeys(
        ("psi", "ks_statistic", "ks_pvalue", "wasserstein")
    )
    assert empty["psi"]["reason"] == "the baseline has no value"
    nan = numeric_drift(np.array([1.0]), np.array([1.0, math.nan]))
    assert nan["wasserstein"] == {"value": None, "reason": "the current holds a non-finite value"}


def test_values_too_large_for_the_arithmetic_are_null_not_infinite():
    result = numeric_drift(np.array([-1e308, 1e308]), np.array([1e308]))
    assert result["psi"] == {
        "value": None,
        "reason": "the baseline's deciles are not finite (the values are too large)",
    }
    assert result["ks_statistic"]["value"] == 0.5
    overflow = numeric_drift(np.array([-1e308]), np.array([1e308]))
    assert overflow["wasserstein"]["value"] is None
    assert "not finite" in overflow["wasserstein"]["reason"]
    json.dumps([result, overflow], allow_nan=False)


# --- group attributes ----------------------------------------------------------------------------


@FAST
@given(
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=60),
    st.lists(st.sampled_from("cdef"), min_size=1, max_size=60),
)
def test_group_drift_matches_the_definition_and_scipy(baseline, current):
    """Categories a, b only ever in the baseline; e, f only in the current file."""
    result = group_drift(baseline, current)
    close(result["psi"]["value"], group_psi_by_definition(baseline, current))
    categories = sorted(set(baseline) | set(current))
    if len(categories) == 1:
        assert result["chi2_pvalue"]["value"] is None
        return
    table = [[baseline.count(c) for c in categories], [current.count(c) for c in categories]]
    assert result["chi2_pvalue"] == {"value": float(stats.chi2_contingency(table).pvalue)}


def test_records_without_the_attribute_are_left_out():
    with_gaps = group_drift(["F", None, "M", None], ["F", "M", None])
    assert with_gaps == group_drift(["F", "M"], ["F", "M"])
    assert with_gaps["psi"]["value"] == 0.0


def test_a_category_in_one_file_only_counts_zero_in_the_other():
    result = group_drift(["F"] * 10 + ["M"] * 10, ["F"] * 10 + ["X"] * 10)
    expected = 2 * (0.0001 - 0.5) * math.log(0.0001 / 0.5)
    close(result["psi"]["value"], expected)
    table = [[10, 10, 0], [10, 0, 10]]
    assert result["chi2_pvalue"]["value"] == stats.chi2_contingency(table).pvalue


def test_a_single_category_in_both_files_has_no_chi_square():
    result = group_drift(["F"] * 5, ["F"] * 3)
    assert result["psi"] == {"value": 0.0}
    assert result["chi2_pvalue"] == {
        "value": None,
        "reason": 'a single category ("F") in both files: nothing to compare',
    }


def test_an_attribute_no_record_of_one_side_carries_is_null():
    result = group_drift(["F", "M"], [None, None])
    assert result == {
        "psi": {"value": None, "reason": "no record of the current carries it"},
        "chi2_pvalue": {"value": None, "reason": "no record of the current carries it"},
    }


# --- files ----------------------------------------------------------------------------------------


def parse(records, filename="r.jsonl"):
    data = csv_bytes(records) if filename.endswith(".csv") else jsonl(records)
    return parse_records(io.BytesIO(data), filename=filename, metrics=())


def test_the_shape_is_product_md_and_strict_json():
    baseline = parse(
        [
            {"score": i / 10, "latency_ms": 100 + i, "groups": {"sex": "FM"[i % 2]}}
            for i in range(10)
        ]
    )
    current = parse([{"score": 0.9, "latency_ms": 300, "groups": {"sex": "F"}}] * 4)
    result = drift(baseline, current)
    assert list(result) == ["n_baseline", "n_current", "fields", "groups"]
    assert (result["n_baseline"], result["n_current"]) == (10, 4)
    assert list(result["fields"]) == ["score", "latency_ms"]
    assert list(result["fields"]["score"]) == ["psi", "ks_statistic", "ks_pvalue", "wasserstein"]
    assert list(result["groups"]["sex"]) == ["psi", "chi2_pvalue"]
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_a_numeric_field_counts_only_with_a_value_in_both_files_and_gaps_are_dropped():
    baseline = parse(
        [
            {"score": 0.2, "empathy": 4, "trust": 3, "completed": True},
            {"score": 0.4, "empathy": None, "trust": 5, "completed": False},
            {"score": 0.6, "empathy": 2, "completed": True},
        ]
    )
    current = parse(
        [
            {"score": 0.3, "latency_ms": 120, "trust": None, "completed": True},
            {"empathy": 5, "latency_ms": 80, "trust": None, "completed": True},
        ]
    )
    result = drift(baseline, current)
    # trust: every current value is missing; latency_ms: only the current file; completed: a flag
    assert list(result["fields"]) == ["score", "empathy"]
    assert result["fields"]["empathy"] == numeric_drift(np.array([4.0, 2.0]), np.array([5.0]))
    assert result["fields"]["score"] == numeric_drift(np.array([0.2, 0.4, 0.6]), np.array([0.3]))
    assert drift_notes(baseline, current) == [
        "latency_ms: only the current file carries it; not compared",
        "trust: only the baseline file carries it; not compared",
    ]


def test_every_group_attribute_of_either_file_is_reported():
    baseline = parse([{"score": 0.5, "groups": {"sex": "F", "site": "north"}}] * 3)
    current = parse(
        [
            {"score": 0.5, "groups": {"sex": "M", "age_band": "65+"}},
            {"score": 0.5, "groups": {"sex": "F"}},
        ]
    )
    result = drift(baseline, current)
    assert list(result["groups"]) == ["age_band", "sex", "site"]
    assert result["groups"]["age_band"]["psi"] == {
        "value": None,
        "reason": "no record of the baseline carries it",
    }
    assert result["groups"]["sex"] == group_drift(["F"] * 3, ["M", "F"])
    assert result["groups"]["site"]["chi2_pvalue"]["value"] is None
    assert drift_notes(baseline, current) == [
        "group age_band: only the current file carries it",
        "group site: only the baseline file carries it",
    ]


def test_every_numeric_field_of_the_contract_is_compared():
    records = [{name: float(i) for name in NUMERIC_FIELDS} for i in range(1, 6)]
    for record in records:
        record["score"] /= 10
    result = drift(parse(records), parse(records[:2]))
    assert tuple(result["fields"]) == NUMERIC_FIELDS


def test_drift_files_reads_jsonl_and_csv_alike():
    records = [
        {"score": (i % 7) / 7, "latency_ms": 50 * i, "groups": {"sex": "FM"[i % 2]}}
        for i in range(30)
    ]
    csv_records = [
        {"score": r["score"], "latency_ms": r["latency_ms"], "group.sex": r["groups"]["sex"]}
        for r in records
    ]
    from_jsonl = drift_files(
        io.BytesIO(jsonl(records)), "b.jsonl", io.BytesIO(jsonl(records[:12])), "c.jsonl"
    )
    from_csv = drift_files(
        io.BytesIO(csv_bytes(csv_records)),
        "b.csv",
        io.BytesIO(csv_bytes(csv_records[:12])),
        "c.csv",
    )
    assert from_jsonl == from_csv
    assert from_jsonl["n_current"] == 12


@pytest.mark.parametrize("role", ["baseline", "current"])
def test_a_refused_file_is_named(role):
    good = jsonl([{"score": 0.5}, {"score": 0.6}])
    bad = jsonl([{"score": 0.5}, {"score": 1.5}])
    files = {"baseline": (good, "base.jsonl"), "current": (good, "batch.jsonl")}
    files[role] = (bad, files[role][1])
    with pytest.raises(DriftFileError) as caught:
        drift_files(
            io.BytesIO(files["baseline"][0]),
            files["baseline"][1],
            io.BytesIO(files["current"][0]),
            files["current"][1],
        )
    error = caught.value
    name = files[role][1]
    assert str(error) == f'{role} file {name} refused: line 2, field "score": 1.5 is outside 0..1'
    assert isinstance(error, RecordError)
    assert (error.role, error.filename, error.line, error.field) == (role, name, 2, "score")


def test_limits_apply_to_both_files():
    records = jsonl([{"score": 0.5}] * 3)
    with pytest.raises(DriftFileError, match=r"current file c\.jsonl refused: line 3: more than 2"):
        drift_files(
            io.BytesIO(jsonl([{"score": 0.5}])),
            "b.jsonl",
            io.BytesIO(records),
            "c.jsonl",
            Limits(max_rows=2),
        )


def test_the_text_lists_worst_psi_first_and_explains_each_null():
    baseline = parse(
        [
            {"score": i / 20, "risk": float(i % 3), "groups": {"sex": "F", "site": "ab"[i % 2]}}
            for i in range(20)
        ]
    )
    current = parse(
        [
            {"score": 0.95, "risk": float(i % 3), "groups": {"sex": "F", "site": "b"}}
            for i in range(9)
        ]
    )
    assert format_text(drift(baseline, current)) == "\n".join(
        [
            "baseline file: 20 records; current file: 9 records",
            "",
            "numeric field  PSI       KS statistic  KS p-value  Wasserstein",
            "-------------  --------  ------------  ----------  -----------",
            "score          8.283     0.95          1.997e-06   0.475",
            "risk           0.005138  0.03333       1           0.05",
            "",
            "group attribute  PSI    chi-square p-value",
            "---------------  -----  ------------------",
            "site             4.604  0.02791",
            "sex              0      n/a",
            "",
            "n/a (not computed):",
            '- sex chi2_pvalue: a single category ("F") in both files: nothing to compare',
            "",
            "PSI rule of thumb: below 0.1 no meaningful shift, 0.1 to 0.25 moderate, 0.25 or "
            "more major.",
        ]
    )


def test_the_text_says_when_there_is_nothing_to_compare():
    text = format_text(drift(parse([{"score": 0.5}]), parse([{"latency_ms": 5}])))
    assert "no numeric field has values in both files" in text
    assert "no group attributes in either file" in text
