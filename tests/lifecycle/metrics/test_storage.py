"""The engine at a million records (issue 15, item 4), with results that do not move.

The bootstrap stores each column over its own records (a subgroup's over the subgroup, a
fairness difference's per-group counts over the group, ECE's residuals once with their bin),
plans chunks of resamples from a byte budget, and parsing keeps typed columns instead of a
parsed object per record. These tests hold the new storage to the full-width product it
replaced, on the same resamples, and pin the chunk plan and the parsing memory.
"""

import io
import json
import math
import tracemalloc

import numpy as np
import pytest

from lifecycle.metrics import bootstrap, engine, evaluate, parse_records
from lifecycle.metrics.bootstrap import chunk_resamples, resample_counts
from lifecycle.metrics.records import CategoryColumn, FloatColumn, IntColumn

from .helpers import full_width_columns, jsonl

METRICS = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "specificity",
    "auroc",
    "brier_score",
    "ece",
    "attack_success_rate",
    "demographic_parity_difference",
    "equalized_odds_difference",
]
SEED, RESAMPLES = 5, 60


def binary_records(n: int, seed: int = 1) -> list[dict]:
    """Binary records with tied scores and two group attributes, one of them missing on some
    records (those are left out of its subgroups and fairness)."""
    rng = np.random.default_rng(seed)
    score = np.round(rng.random(n), 2)
    label = (rng.random(n) < score).astype(int)
    prediction = (score > 0.5).astype(int)
    perturbed = np.where(rng.random(n) < 0.15, 1 - prediction, prediction)
    sex = rng.choice(["F", "M"], n)
    age = rng.choice(["18-39", "40-64", "65+", ""], n, p=[0.4, 0.35, 0.15, 0.1])
    return [
        {
            "id": f"r{i}",
            "label": int(label[i]),
            "prediction": int(prediction[i]),
            "score": float(score[i]),
            "perturbed_prediction": int(perturbed[i]),
            "groups": {"sex": str(sex[i]), "age": str(age[i])},
        }
        for i in range(n)
    ]


def evaluate_and_capture(monkeypatch, data: bytes, **options):
    """evaluate() on `data`, with what it handed to the bootstrap and got back, and which
    metric of which unit each statistic is."""
    seen: dict = {"names": {}}
    run, build, build_fairness = bootstrap.run, engine._build, engine._build_fairness

    def spy_run(n, placed, **kwargs):
        seen["replicates"] = run(n, placed, **kwargs)
        seen.update(n=n, placed=placed)
        return seen["replicates"]

    def spy_build(ctx, key, unit):
        stat = build(ctx, key, unit)
        seen["names"][id(stat)] = key
        return stat

    def spy_build_fairness(ctx, key, attribute):
        unit, stat = build_fairness(ctx, key, attribute)
        seen["names"][id(stat)] = key
        return unit, stat

    monkeypatch.setattr(bootstrap, "run", spy_run)
    monkeypatch.setattr(engine, "_build", spy_build)
    monkeypatch.setattr(engine, "_build_fairness", spy_build_fairness)
    result = evaluate(io.BytesIO(data), filename="r.jsonl", **options)
    return result, seen


def full_width_replicates(n, placed, seed, resamples):
    """The bootstrap as it was before issue 15: every additive statistic's columns padded to
    all n records and multiplied by the counts of all n records; the other statistics from the
    same counts. (replicates, component replicates), keyed by id(statistic)."""
    counts = resample_counts(seed, n, 0, resamples)
    weights = counts.astype(np.float64)
    replicates, components = {}, {}
    for unit, stat in placed:
        if stat.value is None:
            continue
        if stat.columns:
            columns = full_width_columns(stat, unit, n)
            names = list(columns)
            totals = weights @ np.stack([columns[name] for name in names]).T
            by_name = {name: totals[:, i] for i, name in enumerate(names)}
            with np.errstate(divide="ignore", invalid="ignore"):
                replicates[id(stat)] = np.asarray(stat.combine(by_name), dtype=np.float64)
                if stat.component_estimates is not None:
                    # in C order, as `run` keeps them: the interval's sums over resamples
                    # round by layout
                    components[id(stat)] = np.ascontiguousarray(stat.components(by_name))
        else:
            replicates[id(stat)] = stat.replicates(counts)
    return replicates, components


def integer_valued(stat) -> bool:
    return all(np.array_equal(v, np.round(v)) for v in map(np.asarray, stat.columns.values()))


def entry_of(result, unit, key):
    if unit.key == "overall":
        return result["metrics"][key]
    if unit.key.startswith("fairness:"):
        return result["fairness"][unit.key.removeprefix("fairness:")][key]
    return result["groups"][unit.attribute][unit.group][key]


def test_per_subgroup_storage_gives_the_full_width_replicates_and_intervals(monkeypatch):
    data = jsonl(binary_records(700))
    result, seen = evaluate_and_capture(
        monkeypatch, data, metrics=METRICS, seed=SEED, resamples=RESAMPLES
    )
    n, placed = seen["n"], seen["placed"]
    expected, components = full_width_replicates(n, placed, SEED, RESAMPLES)
    # subgroups and fairness differences stored no column over all records
    fairness = [stat for unit, stat in placed if unit.key.startswith("fairness:")]
    assert len(fairness) == 4 and all(stat.column_units for stat in fairness)
    checked = {"exact": 0, "real": 0}
    for unit, stat in placed:
        if stat.value is None:
            continue
        entry = entry_of(result, unit, seen["names"][id(stat)])
        if stat.component_estimates is not None:
            low, high = bootstrap.pairwise_interval(stat.component_estimates, components[id(stat)])
        else:
            low, high, _ = bootstrap.percentile_interval(expected[id(stat)])
        if integer_valued(stat):
            # counts of records: the same totals bit for bit, so the same replicates and the
            # same intervals
            np.testing.assert_array_equal(seen["replicates"][id(stat)], expected[id(stat)])
            assert (entry["ci_low"], entry["ci_high"]) == (low, high), unit.key
            checked["exact"] += 1
        else:
            # real-valued sums (ECE's residuals, Brier's squared errors) without the zero
            # terms: the same sums in another order, equal to rounding
            np.testing.assert_allclose(
                seen["replicates"][id(stat)], expected[id(stat)], rtol=1e-12, err_msg=unit.key
            )
            assert entry["ci_low"] == pytest.approx(low, rel=1e-12)
            assert entry["ci_high"] == pytest.approx(high, rel=1e-12)
            checked["real"] += 1
    # all records and 5 subgroups: 6 integer-valued metrics and AUROC, 2 real-valued; and
    # the 4 fairness differences
    assert checked == {"exact": 6 * 7 + 4, "real": 6 * 2}


def test_chunks_and_threads_do_not_change_any_result_not_even_real_valued_ones(monkeypatch):
    data = jsonl(binary_records(400, seed=2))
    whole = evaluate(io.BytesIO(data), filename="r.jsonl", metrics=METRICS, seed=3, resamples=50)
    monkeypatch.setattr(bootstrap, "MAX_CHUNK_RESAMPLES", 7)  # chunks of 7, the last of 1
    monkeypatch.setattr(bootstrap, "PARALLEL_ELEMENTS", 1)  # on two threads
    chunked = evaluate(io.BytesIO(data), filename="r.jsonl", metrics=METRICS, seed=3, resamples=50)
    assert json.dumps(chunked) == json.dumps(whole)


def test_the_chunk_plan_comes_from_a_memory_budget():
    mb = 1 << 20
    # A million records: a resample's counts row is 1 MB. The old plan (1 << 22 elements per
    # chunk) gave 4 resamples; the budget gives the cap of 64 on two threads.
    assert chunk_resamples(mb + 200_000, 1000, workers=2, budget=256 * mb) == 64
    assert chunk_resamples(mb, 1000, workers=2, budget=64 * mb) == 32
    assert chunk_resamples(mb, 1000, workers=1, budget=40 * mb) == 40
    assert chunk_resamples(10 * mb, 1000, workers=2, budget=256 * mb) == 12
    # never more than asked for, never fewer than one
    assert chunk_resamples(mb, 5, workers=2, budget=256 * mb) == 5
    assert chunk_resamples(300 * mb, 1000, workers=2, budget=256 * mb) == 1
    assert 256 * mb == bootstrap.CHUNK_BYTES and bootstrap.MAX_CHUNK_RESAMPLES == 64


def test_a_chunk_needs_its_counts_row_and_a_bounded_working_set(monkeypatch):
    """Bytes per resample: one per record for its row of counts, plus panels whose size does
    not grow with the file (AUROC works a few resamples at a time in buffers of its own)."""
    monkeypatch.setattr(bootstrap, "PANEL_RECORDS", 256)
    extra = {}
    for n in (1_000, 4_000):
        _, seen = evaluate_and_capture(
            monkeypatch, jsonl(binary_records(n)), metrics=METRICS, resamples=1
        )
        active = [(u, s) for u, s in seen["placed"] if s.value is not None]
        extra[n] = bootstrap._Resampler(n, 0, active, {}).bytes_per_resample() - n
    assert extra[1_000] == extra[4_000] > 0


def test_the_run_uses_the_plan(monkeypatch):
    """A budget that holds 3 resamples of this file: chunks of 3, each reported."""
    data = jsonl(binary_records(300))
    _, seen = evaluate_and_capture(monkeypatch, data, metrics=["auroc", "ece"], resamples=1)
    active = [(u, s) for u, s in seen["placed"] if s.value is not None]
    per_resample = bootstrap._Resampler(300, 0, active, {}).bytes_per_resample()
    monkeypatch.setattr(bootstrap, "CHUNK_BYTES", 3 * per_resample + 1)
    messages = []
    bootstrap.run(
        300,
        seen["placed"],
        seed=0,
        resamples=20,
        workers=1,
        progress=lambda fraction, message: messages.append(message),
    )
    assert messages == [f"bootstrap: {i} of 7 chunks of resamples" for i in range(1, 8)]


# --- parsing: typed columns, bounded memory ---------------------------------------------------


def test_parsed_columns_are_typed_and_read_like_lists():
    records = [
        {"label": 1, "prediction": 0, "score": 0.25, "event": True, "groups": {"site": "b"}},
        {"label": 0, "score": 0.5, "groups": {"site": "a", "age": "65+"}},
        {"label": 1, "prediction": 1, "event": False, "groups": {}},
    ]
    dataset = parse_records(io.BytesIO(jsonl(records)), filename="r.jsonl", metrics=[])
    score, prediction, event = (dataset.columns[k] for k in ("score", "prediction", "event"))
    site, age = dataset.groups["site"], dataset.groups["age"]
    assert isinstance(score, FloatColumn) and isinstance(prediction, IntColumn)
    assert isinstance(event, IntColumn) and isinstance(site, CategoryColumn)
    assert score == [0.25, 0.5, None] and list(score) == [0.25, 0.5, None]
    assert (
        prediction == [0, None, 1]
        and event == [1, None, 0]
        and dataset.column("label") == [1, 0, 1]
    )
    assert site == ["b", "a", None] and age == [None, "65+", None]
    assert (
        score[1] == 0.5
        and score[-1] is None
        and score[np.int64(0)] == 0.25
        and site[:2] == ["b", "a"]
    )
    assert None in score and 0.5 in score and score.index(None) == 2 and prediction.count(None) == 1
    assert site.count(None) == 1 and age.index("65+") == 1
    np.testing.assert_array_equal(np.array(score, dtype=np.float64), [0.25, 0.5, np.nan])
    np.testing.assert_array_equal(score.floats(), [0.25, 0.5, np.nan])
    np.testing.assert_array_equal(prediction.floats(), [0.0, np.nan, 1.0])
    assert site.categories == ["b", "a"] and site.codes().tolist() == [0, 1, -1]
    with pytest.raises(IndexError):
        score[3]


def test_string_classes_and_integers_beyond_int64_stay_python_values():
    big = 10**30
    records = [{"label": 1, "prediction": big}, {"label": 2, "prediction": 3}]
    dataset = parse_records(io.BytesIO(jsonl(records)), filename="r.jsonl", metrics=[])
    assert isinstance(dataset.columns["label"], IntColumn)
    assert dataset.columns["prediction"] == [big, 3]
    assert type(dataset.columns["prediction"]) is list
    records = [{"label": "mild", "prediction": "severe"}, {"label": "mild"}]
    dataset = parse_records(io.BytesIO(jsonl(records)), filename="r.jsonl", metrics=[])
    assert dataset.columns["label"] == ["mild", "mild"]
    assert dataset.columns["prediction"] == ["severe", None]


def test_parsing_keeps_a_bounded_number_of_bytes_per_record():
    """Not a parsed object per record: the columns hold a few bytes a field. Before issue 15,
    parsing these records peaked at about 800 bytes a record and kept about 230."""
    n = 30_000
    data = jsonl(binary_records(n))
    tracemalloc.start()
    try:
        dataset = parse_records(io.BytesIO(data), filename="r.jsonl", metrics=["f1", "auroc"])
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dataset.n == n
    assert peak / n < 400
    assert kept / n < 160
    # numbers take 8 bytes a record, group values 4
    assert dataset.columns["score"].floats().nbytes == 8 * n
    assert dataset.groups["age"].codes().nbytes == 4 * n


def test_iterating_a_large_column_is_exact_block_after_block():
    n = 3 * (1 << 16) + 5  # more than one block of values converted at a time
    values = np.arange(n, dtype=np.float64) / 7
    values[[3, 1 << 16, n - 1]] = np.nan
    column = FloatColumn(values)
    expected = [None if math.isnan(v) else v for v in values.tolist()]
    assert list(column) == expected and column.count(None) == 3
