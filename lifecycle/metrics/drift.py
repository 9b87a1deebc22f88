"""Drift of a file of records against a baseline file (PRODUCT.md, "Monitoring").

For every numeric field of the record contract that both files carry: the population stability
index (PSI) over ten bins cut at the baseline's deciles, the two-sample Kolmogorov-Smirnov
statistic and p-value, and the Wasserstein distance. For every group attribute either file
carries: PSI over the categories and the chi-square p-value of the 2 x k table of counts.
Each statistic is `{"value": x}`, or `{"value": None, "reason": "..."}` when it cannot be
computed: never NaN or infinity, so the result is strict JSON. Nothing is rounded.

The definitions are normative (two sites must get the same number from the same files):

- bin edges = `numpy.quantile(baseline, [0.1, ..., 0.9])` (linear), duplicates dropped with
  `numpy.unique`; the bin of x is `numpy.searchsorted(edges, x, side="right")`;
- proportions floored at `PSI_FLOOR` (no renormalisation);
  PSI = sum over bins of (current - baseline) x ln(current / baseline);
- `scipy.stats.ks_2samp` (two-sided), `scipy.stats.wasserstein_distance`,
  `scipy.stats.chi2_contingency` with its defaults.

Missing values: a record without a field (None) is left out of that field's statistics, and a
record without a group attribute is left out of that attribute's. docs/monitoring.md ("Drift")
explains the rules to teams; `manage.py drift` prints the result.

Performance: 1,000,000 vs 1,000,000 records over five fields and three attributes in a few
seconds (benchmarks/monitoring.py). Each numeric column becomes one float64 array, sorted once:
scipy sorts its inputs again, and sorting sorted data is several times faster, while the
statistics depend only on the values, so they are exactly scipy's on the unsorted data.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from .records import Dataset, Limits, RecordError, parse_records

# The record contract's numeric fields (docs/metrics.md), in the order results list them. Flags
# (`completed`, `hallucinated`, `event`) are booleans, never numeric; classes are categories.
NUMERIC_FIELDS: tuple[str, ...] = ("score", "latency_ms", "empathy", "trust", "risk", "time")

PSI_QUANTILES = np.arange(1, 10) / 10  # exactly 0.1, 0.2, ..., 0.9 (i / 10 rounds correctly)
PSI_FLOOR = 0.0001

NUMERIC_STATISTICS = ("psi", "ks_statistic", "ks_pvalue", "wasserstein")
GROUP_STATISTICS = ("psi", "chi2_pvalue")

Statistic = dict[str, Any]


class DriftFileError(RecordError):
    """A refused baseline or current file: the record contract's `RecordError` (same `line`,
    `field` and `message`) whose sentence says which file, e.g. 'current file batch.csv
    refused: line 4, field "score": 1.3 is outside 0..1'."""

    def __init__(self, error: RecordError, *, role: str, filename: str):
        self.role = role
        self.filename = filename
        super().__init__(error.message, line=error.line, field=error.field)

    def sentence(self) -> str:
        return f"{self.role} file {self.filename} refused: {super().sentence()}"


def _value(value: float, what: str) -> Statistic:
    """A statistic, or null with a reason when the arithmetic overflowed."""
    if np.isfinite(value):
        return {"value": float(value)}
    return {"value": None, "reason": f"{what} is not finite (the values are too large)"}


def _null(reason: str) -> Statistic:
    return {"value": None, "reason": reason}


def _psi(baseline_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI of two count vectors over the same bins or categories (each with a positive sum)."""
    baseline = np.maximum(baseline_counts / baseline_counts.sum(), PSI_FLOOR)
    current = np.maximum(current_counts / current_counts.sum(), PSI_FLOOR)
    return float(np.sum((current - baseline) * np.log(current / baseline)))


def numeric_drift(baseline: np.ndarray, current: np.ndarray) -> dict[str, Statistic]:
    """PSI, KS statistic and p-value, and Wasserstein distance of one numeric field.

    `baseline` and `current` hold the field's values (missing ones already dropped); each
    statistic is null with a reason when a side is empty or holds a non-finite value.
    """
    # Imported here: a web process that never computes drift does not load scipy.
    from scipy import stats

    base = np.sort(np.asarray(baseline, dtype=np.float64))
    cur = np.sort(np.asarray(current, dtype=np.float64))
    for side, values in (("baseline", base), ("current", cur)):
        if values.size == 0:
            return {key: _null(f"the {side} has no value") for key in NUMERIC_STATISTICS}
        if not np.isfinite(values).all():
            return {
                key: _null(f"the {side} holds a non-finite value") for key in NUMERIC_STATISTICS
            }
    result: dict[str, Statistic] = {}
    with np.errstate(over="ignore", invalid="ignore"):
        edges = np.unique(np.quantile(base, PSI_QUANTILES))
        if np.isfinite(edges).all():
            bins = edges.size + 1
            base_counts = np.bincount(np.searchsorted(edges, base, side="right"), minlength=bins)
            cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=bins)
            result["psi"] = _value(_psi(base_counts, cur_counts), "PSI")
        else:
            result["psi"] = _null(
                "the baseline's deciles are not finite (the values are too large)"
            )
        # ks_2samp warns when it falls back from the exact p-value to the asymptotic one; the
        # value returned is still scipy's, which is the definition.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                ks = stats.ks_2samp(base, cur)
            except (ValueError, FloatingPointError) as error:
                result["ks_statistic"] = _null(f"scipy refused it: {error}")
                result["ks_pvalue"] = _null(f"scipy refused it: {error}")
            else:
                result["ks_statistic"] = _value(ks.statistic, "the KS statistic")
                result["ks_pvalue"] = _value(ks.pvalue, "the KS p-value")
            try:
                distance = stats.wasserstein_distance(base, cur)
            except (ValueError, FloatingPointError) as error:
                result["wasserstein"] = _null(f"scipy refused it: {error}")
            else:
                result["wasserstein"] = _value(distance, "the Wasserstein distance")
    return result


def _counts(values: Sequence[str | None]) -> dict[str, int]:
    """Records per category; None (a record without the attribute) is not a category."""
    return {category: n for category, n in Counter(values).items() if category is not None}


def group_drift(
    baseline: Sequence[str | None], current: Sequence[str | None]
) -> dict[str, Statistic]:
    """PSI over the union of categories and the chi-square p-value of the 2 x k table of
    counts, for one group attribute. None (a record without the attribute) is left out; a
    category absent from one side counts 0 there."""
    # Imported here: a web process that never computes drift does not load scipy.
    from scipy import stats

    base_counts, cur_counts = _counts(baseline), _counts(current)
    for side, counts in (("baseline", base_counts), ("current", cur_counts)):
        if not counts:
            return {key: _null(f"no record of the {side} carries it") for key in GROUP_STATISTICS}
    categories = sorted(base_counts.keys() | cur_counts.keys(), key=str)
    table = np.array(
        [[base_counts.get(c, 0) for c in categories], [cur_counts.get(c, 0) for c in categories]],
        dtype=np.int64,
    )
    result: dict[str, Statistic] = {"psi": _value(_psi(table[0], table[1]), "PSI")}
    if len(categories) < 2:
        result["chi2_pvalue"] = _null(
            f'a single category ("{categories[0]}") in both files: nothing to compare'
        )
        return result
    try:
        chi2 = stats.chi2_contingency(table)
    except (ValueError, FloatingPointError) as error:
        result["chi2_pvalue"] = _null(f"scipy refused it: {error}")
    else:
        result["chi2_pvalue"] = _value(chi2.pvalue, "the chi-square p-value")
    return result


def _values(column: list[Any] | None) -> np.ndarray:
    """The values of a numeric column as float64, without the missing ones. numpy turns None
    into NaN, which the record contract never lets into a column, so NaN marks the gaps."""
    if not column:
        return np.empty(0)
    values = np.array(column, dtype=np.float64)
    return values[~np.isnan(values)]


def compared_fields(baseline: Dataset, current: Dataset) -> list[str]:
    """The numeric fields that have a value in both files, in `NUMERIC_FIELDS` order."""
    return [
        name
        for name in NUMERIC_FIELDS
        if _has_value(baseline.columns.get(name)) and _has_value(current.columns.get(name))
    ]


def _has_value(column: list[Any] | None) -> bool:
    return column is not None and any(value is not None for value in column)


def drift(baseline: Dataset, current: Dataset) -> dict[str, Any]:
    """The drift of `current` against `baseline`: `{"n_baseline", "n_current", "fields":
    {field: numeric_drift(...)}, "groups": {attribute: group_drift(...)}}` over every numeric
    field with a value in both files and every group attribute of either file (sorted)."""
    fields = {
        name: numeric_drift(_values(baseline.columns.get(name)), _values(current.columns.get(name)))
        for name in compared_fields(baseline, current)
    }
    missing: list[str | None] = []
    groups = {
        attribute: group_drift(
            baseline.groups.get(attribute, missing), current.groups.get(attribute, missing)
        )
        for attribute in sorted(baseline.groups.keys() | current.groups.keys())
    }
    return {
        "n_baseline": baseline.n,
        "n_current": current.n,
        "fields": fields,
        "groups": groups,
    }


def drift_notes(baseline: Dataset, current: Dataset) -> list[str]:
    """What the comparison leaves out or cannot say, in sentences for the person checking the
    files: numeric fields only one file carries, group attributes only one file carries."""
    notes = []
    for name in NUMERIC_FIELDS:
        in_baseline = _has_value(baseline.columns.get(name))
        in_current = _has_value(current.columns.get(name))
        if in_baseline != in_current:
            side = "baseline" if in_baseline else "current"
            notes.append(f"{name}: only the {side} file carries it; not compared")
    for attribute in sorted(baseline.groups.keys() ^ current.groups.keys()):
        side = "baseline" if attribute in baseline.groups else "current"
        notes.append(f"group {attribute}: only the {side} file carries it")
    return notes


def parse_pair(
    baseline: IO[bytes],
    baseline_name: str,
    current: IO[bytes],
    current_name: str,
    limits: Limits | None = None,
) -> tuple[Dataset, Dataset]:
    """Both files read and validated by the record contract (no metric required); a refused
    file raises `DriftFileError` naming it as the baseline or the current file."""
    datasets = []
    for role, stream, name in (
        ("baseline", baseline, baseline_name),
        ("current", current, current_name),
    ):
        try:
            datasets.append(parse_records(stream, filename=name, metrics=(), limits=limits))
        except RecordError as error:
            raise DriftFileError(error, role=role, filename=name) from None
    return datasets[0], datasets[1]


def drift_files(
    baseline: IO[bytes],
    baseline_name: str,
    current: IO[bytes],
    current_name: str,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """`drift` of two record files (JSON Lines or CSV, by their names' extensions). Raises
    `DriftFileError` (a `RecordError`) naming the refused file."""
    return drift(*parse_pair(baseline, baseline_name, current, current_name, limits))


# --- the command line's text rendering ----------------------------------------------------------

PSI_BANDS = (
    "PSI rule of thumb: below 0.1 no meaningful shift, 0.1 to 0.25 moderate, 0.25 or more major."
)


def _number(statistic: Statistic) -> str:
    value = statistic["value"]
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def _worst_first(entries: dict[str, dict[str, Statistic]]) -> list[str]:
    """Names by PSI, largest first; those without a PSI last, each group in name order."""

    def key(name: str) -> tuple[bool, float, str]:
        psi = entries[name]["psi"]["value"]
        return (psi is None, -(psi or 0.0), name)

    return sorted(entries, key=key)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    return [line(header).rstrip(), line(["-" * width for width in widths]), *map(line, rows)]


def format_text(result: dict[str, Any]) -> str:
    """The drift result as two tables, worst PSI first, with the reasons for any n/a."""
    out = [
        f"baseline file: {result['n_baseline']:,} records; current file: "
        f"{result['n_current']:,} records"
    ]
    reasons: list[str] = []

    def cells(name: str, entry: dict[str, Statistic], keys: tuple[str, ...]) -> list[str]:
        for key in keys:
            if entry[key]["value"] is None:
                reasons.append(f"{name} {key}: {entry[key]['reason']}")
        return [name, *(_number(entry[key]) for key in keys)]

    fields = result["fields"]
    out.append("")
    if fields:
        rows = [cells(name, fields[name], NUMERIC_STATISTICS) for name in _worst_first(fields)]
        header = ["numeric field", "PSI", "KS statistic", "KS p-value", "Wasserstein"]
        out += [line.rstrip() for line in _table(header, rows)]
    else:
        out.append("no numeric field has values in both files")
    groups = result["groups"]
    out.append("")
    if groups:
        rows = [cells(name, groups[name], GROUP_STATISTICS) for name in _worst_first(groups)]
        header = ["group attribute", "PSI", "chi-square p-value"]
        out += [line.rstrip() for line in _table(header, rows)]
    else:
        out.append("no group attributes in either file")
    if reasons:
        out += ["", "n/a (not computed):", *(f"- {reason}" for reason in reasons)]
    out += ["", PSI_BANDS]
    return "\n".join(out)
