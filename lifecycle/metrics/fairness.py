"""Demographic parity and equalized odds differences per group attribute (fairlearn,
method="between_groups", agg="worst_case").

Per group: selection rate P(prediction = 1), true positive rate and false positive rate. As in
fairlearn, a group without positives (negatives) has a true (false) positive rate of 0, which
is why such groups carry a warning. Records without a value for the attribute are left out.

The values are computed from per-group counts with fairlearn's definitions rather than by
calling fairlearn, whose MetricFrame takes 0.5-1 s per call on 100,000 records; the tests prove
them exactly equal to fairlearn's `demographic_parity_difference` and
`equalized_odds_difference`, per file and per resample. fairlearn is a test dependency.

Their intervals are not percentile intervals (bootstrap.pairwise_interval): the statistic is
the largest absolute pairwise difference between group rates, and the interval comes from
simultaneous bounds on those pairwise differences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .bootstrap import PAIRWISE_METHOD, Additive, Statistic, Unit, undefined
from .classification import binary_values, classes
from .context import Context
from .records import CategoryColumn


def group_codes(ctx: Context, attribute: str) -> tuple[list[str], np.ndarray]:
    """Sorted group values of `attribute` and each record's code (-1 where it has none)."""

    def compute() -> tuple[list[str], np.ndarray]:
        column = ctx.dataset.groups[attribute]
        if isinstance(column, CategoryColumn):  # codes in order of appearance, re-sorted
            values = sorted(column.categories)
            rank = np.array([values.index(v) for v in column.categories] + [-1])
            return values, rank[column.codes()]  # code -1 (no value) picks the -1 at the end
        values = sorted({v for v in column if v is not None})
        code = {value: i for i, value in enumerate(values)}
        return values, np.array([code.get(v, -1) if v is not None else -1 for v in column])

    return ctx.once(f"groups:{attribute}", compute)


def group_units(ctx: Context, attribute: str) -> list[Unit]:
    """One unit per group of `attribute`, in the order of `group_codes`: the subgroups the
    engine reports, and the records a fairness difference's per-group columns are over."""

    def compute() -> list[Unit]:
        values, codes = group_codes(ctx, attribute)
        # One stable sort instead of a scan of all records per group.
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(values) + 1))
        return [
            Unit(
                key=f"group:{attribute}={value}",
                indices=order[bounds[code] : bounds[code + 1]],
                attribute=attribute,
                group=value,
            )
            for code, value in enumerate(values)
        ]

    return ctx.once(f"group-units:{attribute}", compute)


def fairness_unit(ctx: Context, attribute: str) -> Unit:
    _, codes = group_codes(ctx, attribute)
    return Unit(key=f"fairness:{attribute}", indices=np.flatnonzero(codes >= 0))


def _by_group(t: Mapping[str, np.ndarray], name: str, k: int) -> np.ndarray:
    return np.stack([t[f"{name}{g}"] for g in range(k)], axis=-1)


Rates = Callable[[Mapping[str, np.ndarray], int], tuple[list[np.ndarray], np.ndarray]]


def _parity_rates(t: Mapping[str, np.ndarray], k: int) -> tuple[list[np.ndarray], np.ndarray]:
    """([selection rate (..., k)], group present (..., k))."""
    size, selected = _by_group(t, "n", k), _by_group(t, "sel", k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return [selected / size], size > 0


def _odds_rates(t: Mapping[str, np.ndarray], k: int) -> tuple[list[np.ndarray], np.ndarray]:
    """([true positive rate, false positive rate (..., k)], group present (..., k))."""
    size, positives = _by_group(t, "n", k), _by_group(t, "pos", k)
    tp, fp = _by_group(t, "tp", k), _by_group(t, "fp", k)
    negatives = size - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        # fairlearn: a rate with no records to divide by is 0 (confusion_matrix's
        # normalize="true" turns 0/0 into 0)
        tpr = np.where(positives > 0, tp / positives, 0.0)
        fpr = np.where(negatives > 0, fp / negatives, 0.0)
    return [tpr, fpr], size > 0


def _spread(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    high = np.where(present, values, -np.inf).max(axis=-1)
    low = np.where(present, values, np.inf).min(axis=-1)
    return np.where(present.any(axis=-1), high - low, np.nan)


class Difference(Additive):
    """The largest between-group difference of one or more rates (fairlearn's worst case).

    Its components are the pairwise differences rate(g) - rate(h) for g < h of every rate, NaN
    where a resample has no record of g or h; the value is the largest of their magnitudes.
    """

    interval_method = PAIRWISE_METHOD

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        rates: Rates,
        *,
        k: int,
        n: int,
        column_units: dict[str, Unit] | None = None,
    ):
        self.rates, self.k = rates, k
        self.first, self.second = np.triu_indices(k, 1)
        super().__init__(
            columns,
            self.spread,
            n=n,
            reason_if_undefined="no records with this attribute",
            column_units=column_units,
        )
        totals = {name: np.array([np.sum(column)]) for name, column in columns.items()}
        with np.errstate(divide="ignore", invalid="ignore"):
            self.component_estimates = self.components(totals)[0]

    def spread(self, t: Mapping[str, np.ndarray]) -> np.ndarray:
        rates, present = self.rates(t, self.k)
        # np.fmax as fairlearn's max over the rates' differences (one rate for parity)
        return np.fmax.reduce([_spread(rate, present) for rate in rates])

    def components(self, totals: Mapping[str, np.ndarray]) -> np.ndarray:
        rates, present = self.rates(totals, self.k)
        pairs = [
            np.where(present, rate, np.nan)[..., self.first]
            - np.where(present, rate, np.nan)[..., self.second]
            for rate in rates
        ]
        return np.concatenate(pairs, axis=-1)


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
    # Each group's counts are over the group's records only (the subgroup units): stored over
    # all records of the attribute they would be zero everywhere else.
    columns: dict[str, np.ndarray] = {}
    parts: dict[str, Unit] = {}
    for code, part in enumerate(group_units(ctx, attribute)):
        yg, pg = y_all[part.indices], p_all[part.indices]
        here = {f"n{code}": np.ones(part.size, dtype=bool)}
        if parity:
            here[f"sel{code}"] = pg == 1
        else:
            here[f"pos{code}"] = yg == 1
            here[f"tp{code}"] = (yg == 1) & (pg == 1)
            here[f"fp{code}"] = (yg == 0) & (pg == 1)
        columns.update(here)
        parts.update(dict.fromkeys(here, part))
    rates = _parity_rates if parity else _odds_rates
    stat = Difference(columns, rates, k=k, n=m, column_units=parts)
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
