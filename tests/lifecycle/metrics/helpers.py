"""Builders for record files and the slow reference bootstrap used as a test oracle."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from lifecycle.metrics import Limits, evaluate, parse_records
from lifecycle.metrics.bootstrap import Statistic, Unit, resample_indices, run
from lifecycle.metrics.context import Context
from lifecycle.metrics.engine import BUILDERS
from lifecycle.metrics.fairness import build as build_fairness


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def csv_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    columns: list[str] = []
    for row in rows:
        for name in row:
            if name not in columns:
                columns.append(name)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def run_file(data: bytes, filename: str = "records.jsonl", **options: Any) -> dict[str, Any]:
    options.setdefault("resamples", 0)
    return evaluate(io.BytesIO(data), filename=filename, **options)


def value(result: dict[str, Any], key: str) -> Any:
    return result["metrics"][key]["value"]


def context(records: list[dict[str, Any]], metrics: list[str], seed: int = 0) -> Context:
    dataset = parse_records(io.BytesIO(jsonl(records)), filename="r.jsonl", metrics=metrics)
    return Context(dataset, Limits(), seed, metrics)


def engine_replicates(
    records: list[dict[str, Any]],
    key: str,
    *,
    resamples: int,
    seed: int = 0,
    attribute: str | None = None,
    group: str | None = None,
) -> tuple[Statistic, np.ndarray]:
    """The vectorised bootstrap's replicates of `key` over all records (or one subgroup, or
    the fairness difference of `attribute`)."""
    ctx = context(records, [key], seed)
    if key in ("demographic_parity_difference", "equalized_odds_difference"):
        unit, stat = build_fairness(ctx, key, attribute or "g")
    else:
        indices = np.arange(ctx.n)
        if attribute is not None:
            indices = np.flatnonzero(np.array([v == group for v in ctx.dataset.groups[attribute]]))
        unit = Unit(key="u", indices=indices)
        stat = BUILDERS[key](ctx, key, unit)
    assert isinstance(stat, Statistic) and stat.value is not None, stat.reason
    replicates = run(ctx.n, [(unit, stat)], seed=seed, resamples=resamples)[id(stat)]
    return stat, replicates


def full_width_columns(stat: Statistic, unit: Unit, n: int) -> dict[str, np.ndarray]:
    """The statistic's columns over all n records, zero outside the records each is over (its
    part of the unit in `column_units`, or the unit), a segmented column as one column per
    segment: the layout the bootstrap stored before issue 15."""
    full = {}
    for name, values in stat.columns.items():
        indices = stat.column_units.get(name, unit).indices
        if name in stat.column_segments:
            segment, size = stat.column_segments[name]
            for k in range(size):
                column = np.zeros(n)
                column[indices[segment == k]] = np.asarray(values)[segment == k]
                full[f"{name}{k}"] = column
        else:
            column = np.zeros(n)
            column[indices] = values
            full[name] = column
    return full


def slow_replicates(
    n: int, resamples: int, seed: int, compute: Callable[[np.ndarray], float]
) -> np.ndarray:
    """The naive loop: recompute the metric with its reference library on each resample's
    records, drawn with the same indices as the engine."""
    out = np.empty(resamples)
    for b in range(resamples):
        try:
            out[b] = compute(resample_indices(seed, n, b))
        except (ValueError, ZeroDivisionError):
            out[b] = np.nan
    return out
