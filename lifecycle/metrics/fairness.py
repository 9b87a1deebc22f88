"""Demographic parity and equalized odds differences per group attribute (fairlearn,
method="between_groups", agg="worst_case").

Per group: selection rate P(prediction = 1), true positive rate and false positive rate. As in
fairlearn, a group without positives (negatives) has a true (false) positive rate of 0, which
is why such groups carry a warning. Records without a value for the attribute are left out.

The values are computed from per-group counts with fairlearn's definitions rather than by
calling fairlearn, whose MetricFrame takes 0.5-1 s per call on 100,000 records; the tests prove
them exactly equal to fairlearn's `demographic_parity_difference` and
`equalized_odds_difference`, per file and per resample. fairlearn is a test dependency.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .bootstrap import Additive, Statistic, Unit, undefined
from .classification import binary_values, classes
from .context import Context


def group_codes(ctx: Context, attribute: str) -> tuple[list[str], np.ndarray]:
    """Sorted group values of `attribute` and each record's code (-1 where it has none)."""

    def compute() -> tuple[list[str], np.ndarray]:
        column = ctx.dataset.groups[attribute]
        values = sorted({v for v in column if v is not None})
        code = {value: i for i, value in enumerate(values)}
        return values, np.array([code.get(v, -1) if v is not None else -1 for v in column])

    return ctx.once(f"groups:{attribute}", compute)


def fairness_unit(ctx: Context, attribute: str) -> Unit:
    _, codes = group_codes(ctx, attribute)
    return Unit(key=f"fairness:{attribute}", indices=np.flatnonzero(codes >= 0))


def _by_group(t: Mapping[str, np.ndarray], name: str, k: int) -> np.ndarray:
    return np.stack([t[f"{name}{g}"] for g in range(k)], axis=-1)


def _parity(k: int):
    def formula(t: Mapping[str, np.ndarray]) -> np.ndarray:
        size, selected = _by_group(t, "n", k), _by_group(t, "sel", k)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _spread(selected / size, size > 0)

    return formula


def _odds(k: int):
    def formula(t: Mapping[str, np.ndarray]) -> np.ndarray:
        size, positives = _by_group(t, "n", k), _by_group(t, "pos", k)
        tp, fp = _by_group(t, "tp", k), _by_group(t, "fp", k)
        negatives = size - positives
        with np.errstate(divide="ignore", invalid="ignore"):
            # fairlearn: a rate with no records to divide by is 0 (confusion_matrix's
            # normalize="true" turns 0/0 into 0)
            tpr = np.where(positives > 0, tp / positives, 0.0)
            fpr = np.where(negatives > 0, fp / negatives, 0.0)
        present = size > 0
        return np.fmax(_spread(tpr, present), _spread(fpr, present))

    return formula


def _spread(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    high = np.where(present, values, -np.inf).max(axis=-1)
    low = np.where(present, values, np.inf).min(axis=-1)
    return np.where(present.any(axis=-1), high - low, np.nan)


def build(ctx: Context, key: str, attribute: str) -> tuple[Unit, Statistic]:
    unit = fairness_unit(ctx, attribute)
    cls = classes(ctx)
    values, codes = group_codes(ctx, attribute)
    if cls.lists:
        return unit, undefined("needs binary 0/1 labels and predictions; labels are lists")
    y_all, p_all = binary_values(ctx)
    y, p, g = y_all[unit.indices], p_all[unit.indices], codes[unit.indices]
    m, k = int(unit.indices.size), len(values)
    predictions = {v for v in np.unique(p) if not np.isnan(v)}
    if key == "demographic_parity_difference" and not predictions <= {0.0, 1.0}:
        return unit, undefined(f"needs binary 0/1 predictions; found {cls.describe()}")
    if key == "equalized_odds_difference" and not cls.binary:
        return unit, undefined(f"needs binary 0/1 labels and predictions; found {cls.describe()}")
    parity = key == "demographic_parity_difference"
    columns: dict[str, np.ndarray] = {}
    for code in range(k):
        member = (g == code).astype(np.float64)
        columns[f"n{code}"] = member
        if parity:
            columns[f"sel{code}"] = member * (p == 1)
        else:
            columns[f"pos{code}"] = member * (y == 1)
            columns[f"tp{code}"] = member * ((y == 1) & (p == 1))
            columns[f"fp{code}"] = member * ((y == 0) & (p == 1))
    formula = _parity(k) if parity else _odds(k)
    stat = Additive(columns, formula, n=m, reason_if_undefined="no records with this attribute")
    stat.warnings.extend(_small_groups(ctx, key, values, g, y))
    if k == 1:
        stat.warnings.append(f'only one group ("{values[0]}"): the difference is 0 by definition')
    return unit, stat


def _small_groups(
    ctx: Context, key: str, values: list[str], g: np.ndarray, y: np.ndarray
) -> list[str]:
    limits = ctx.limits
    notes = []
    for code, value in enumerate(values):
        member = g == code
        size = int(member.sum())
        problems = []
        if size < limits.min_group_size:
            problems.append(f"{size} records (minimum {limits.min_group_size})")
        if key == "equalized_odds_difference":
            positives = int((y[member] == 1).sum())
            negatives = size - positives
            if positives < limits.min_group_positives:
                problems.append(
                    f"{positives} positive labels (minimum {limits.min_group_positives})"
                )
            if negatives < limits.min_group_negatives:
                problems.append(
                    f"{negatives} negative labels (minimum {limits.min_group_negatives})"
                )
        if problems:
            notes.append(f'group "{value}" has only ' + " and ".join(problems))
    return notes
