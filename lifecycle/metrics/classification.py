"""Classification, probability and triage metrics (scikit-learn conventions).

Binary 0/1 labels use positive class 1; any other labels use macro averaging over the classes
present, as scikit-learn does. Values come from per-record confusion statistics, the same ones
the bootstrap resamples; tests prove them equal to scikit-learn on random data. AUROC's value
is scikit-learn's `roc_auc_score`; its resamples use the equivalent rank statistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bootstrap import Additive, Statistic, Unit, undefined
from .context import Builder, Context, MatrixValue, Result
from .records import IntColumn, float_values

ECE_BINS = 10


@dataclass
class Classes:
    """Label and prediction as integer codes into the sorted list of classes in the file."""

    labels: list[Any]
    y: np.ndarray  # code per record, -1 where missing
    p: np.ndarray
    y01: bool  # every label is 0 or 1
    binary: bool  # every label and prediction is 0 or 1
    lists: bool  # labels are lists (codes or spans)

    def describe(self) -> str:
        shown = ", ".join(str(label) for label in self.labels[:6])
        more = ", ..." if len(self.labels) > 6 else ""
        return f"{len(self.labels)} classes ({shown}{more})"


def classes(ctx: Context) -> Classes:
    def compute() -> Classes:
        label = ctx.dataset.column("label")
        prediction = ctx.dataset.column("prediction")
        if isinstance(label, IntColumn) and isinstance(prediction, IntColumn):
            return _integer_classes(label, prediction)
        values = {v for v in label if v is not None} | {v for v in prediction if v is not None}
        lists = any(isinstance(v, tuple) for v in values)
        labels = sorted(values, key=lambda v: (str(type(v)), v)) if not lists else []
        code = {value: i for i, value in enumerate(labels)}
        y = np.array([code.get(v, -1) if v is not None else -1 for v in label], dtype=np.int64)
        p = np.array([code.get(v, -1) if v is not None else -1 for v in prediction], dtype=np.int64)
        label_values = {v for v in label if v is not None}
        y01 = not lists and bool(label_values) and label_values <= {0, 1}
        binary = not lists and bool(values) and values <= {0, 1}
        return Classes(labels=labels, y=y, p=p, y01=y01, binary=binary, lists=lists)

    return ctx.once("classes", compute)


def _integer_classes(label: IntColumn, prediction: IntColumn) -> Classes:
    """`classes` at array speed for integer labels and predictions (the sorted integers are
    the classes; the same codes as the general path)."""
    y_values, y_present = label.integers()
    p_values, p_present = prediction.integers()
    label_values = np.unique(y_values[y_present])
    values = np.union1d(label_values, p_values[p_present])
    labels = [int(v) for v in values]

    def codes(ints: np.ndarray, present: np.ndarray) -> np.ndarray:
        return np.where(present, np.searchsorted(values, ints), -1).astype(np.int64)

    y01 = bool(label_values.size) and bool(np.isin(label_values, (0, 1)).all())
    binary = bool(values.size) and bool(np.isin(values, (0, 1)).all())
    return Classes(
        labels=labels,
        y=codes(y_values, y_present),
        p=codes(p_values, p_present),
        y01=y01,
        binary=binary,
        lists=False,
    )


def binary_values(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Label and prediction as 0/1 floats (NaN where missing)."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        return float_values(ctx.dataset.column("label")), float_values(
            ctx.dataset.column("prediction")
        )

    return ctx.once("binary_values", compute)


def _confusion_columns(ctx: Context, unit: Unit) -> dict[str, np.ndarray]:
    """The unit's 0/1 confusion indicators, one byte a record, computed once per unit and
    shared by the metrics built on them (precision, recall, F1, ...)."""

    def compute() -> dict[str, np.ndarray]:
        y, p = binary_values(ctx)
        y, p = y[unit.indices], p[unit.indices]
        return {
            "tp": (y == 1) & (p == 1),
            "fp": (y == 0) & (p == 1),
            "fn": (y == 1) & (p == 0),
            "tn": (y == 0) & (p == 0),
        }

    return ctx.once(f"confusion:{unit.key}", compute)


def _multiclass_counts(
    y: np.ndarray, p: np.ndarray, k: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, true counts and predicted counts."""
    hit = y == p
    tp = np.bincount(y[hit], weights=None if weights is None else weights[hit], minlength=k)
    true = np.bincount(y, weights=weights, minlength=k)
    pred = np.bincount(p, weights=weights, minlength=k)
    return tp.astype(np.float64), true.astype(np.float64), pred.astype(np.float64)


def _per_class(tp: np.ndarray, true: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1, 0 where undefined (scikit-learn's default)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "precision": np.where(pred > 0, tp / pred, 0.0),
            "recall": np.where(true > 0, tp / true, 0.0),
            "f1": np.where(true + pred > 0, 2 * tp / (true + pred), 0.0),
        }


def macro_scores(tp: np.ndarray, true: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Macro precision, recall and F1 over the classes present (in labels or predictions),
    as scikit-learn averages them. Works on (..., k) arrays."""
    present = (true + pred) > 0
    count = present.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            key: np.where(present, values, 0.0).sum(axis=-1) / count
            for key, values in _per_class(tp, true, pred).items()
        }


class Macro(Statistic):
    """Macro-averaged precision, recall or F1 for labels other than 0/1."""

    def __init__(self, key: str, y: np.ndarray, p: np.ndarray, k: int, indices: np.ndarray):
        self.key, self.y, self.p, self.k, self.indices = key, y, p, k, indices
        tp, true, pred = _multiclass_counts(y, p, k)
        present = (true + pred) > 0
        # np.average over the classes present, exactly as scikit-learn takes the mean
        value = float(np.average(_per_class(tp, true, pred)[key][present]))
        super().__init__(value=value, n=int(y.size))

    def replicates(self, counts: np.ndarray) -> np.ndarray:
        rows = np.take(counts, self.indices, axis=1).astype(np.float64)
        out = np.empty(rows.shape[0])
        for row, weights in enumerate(rows):
            tp, true, pred = _multiclass_counts(self.y, self.p, self.k, weights)
            out[row] = macro_scores(tp, true, pred)[self.key]
        return out


def kappa_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Quadratic-weighted Cohen's kappa from (..., k, k) confusion matrices, as scikit-learn
    computes it on the classes present in each matrix."""
    rows = confusion.sum(axis=-1)  # true counts
    cols = confusion.sum(axis=-2)  # predicted counts
    present = (rows + cols) > 0
    rank = np.cumsum(present, axis=-1) - 1
    weights = (rank[..., :, None] - rank[..., None, :]) ** 2
    total = cols.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = cols[..., :, None] * rows[..., None, :] / total[..., None, None]
        observed = (weights * confusion).sum(axis=(-2, -1))
        chance = (weights * expected).sum(axis=(-2, -1))
        return 1 - observed / chance


class Kappa(Statistic):
    """Quadratic-weighted kappa; resamples rebuild the confusion matrix by weighted bincount."""

    def __init__(self, y: np.ndarray, p: np.ndarray, k: int, indices: np.ndarray):
        self.pair = y * k + p
        self.k, self.indices = k, indices
        confusion = np.bincount(self.pair, minlength=k * k).reshape(k, k).astype(np.float64)
        value = float(kappa_from_confusion(confusion))
        if np.isfinite(value):
            super().__init__(value=value, n=int(y.size))
        else:
            super().__init__(
                value=None,
                n=int(y.size),
                reason="labels and predictions are all one class: kappa is undefined",
            )

    def replicates(self, counts: np.ndarray) -> np.ndarray:
        rows = np.take(counts, self.indices, axis=1).astype(np.float64)
        k = self.k
        confusion = np.stack(
            [np.bincount(self.pair, weights=w, minlength=k * k) for w in rows]
        ).reshape(-1, k, k)
        return kappa_from_confusion(confusion)


class Auroc(Statistic):
    """AUROC: scikit-learn's value; resamples by the weighted Mann-Whitney statistic, which
    equals the trapezoidal ROC area (ties count one half)."""

    def __init__(self, y: np.ndarray, score: np.ndarray, indices: np.ndarray):
        # Imported here: a web process loads the engine's registry, never scikit-learn.
        from sklearn.metrics import roc_auc_score

        super().__init__(value=float(roc_auc_score(y, score)), n=int(y.size))
        order = np.lexsort((y, score))  # by score; negatives first among equal scores
        sorted_y, sorted_s = y[order], score[order]
        negative = sorted_y == 0
        # The negatives and the positives, each in score order, and for each positive how many
        # negatives lie at or below it: a resample's running sum of negative weights, read at
        # those positions, gives every positive's weighted count of negatives below it.
        self.negatives = indices[order[negative]]
        self.positives = indices[order[~negative]]
        self.below = np.cumsum(negative)[~negative]
        # Blocks of equal scores holding both classes: their pairs count one half.
        new_block = np.r_[True, sorted_s[1:] != sorted_s[:-1]]
        block = np.cumsum(new_block) - 1
        has_neg = np.bincount(block, weights=negative) > 0
        has_pos = np.bincount(block, weights=~negative) > 0
        mixed = has_neg & has_pos
        self.tied_negatives, self.negative_starts = _tied(block[negative], mixed)
        self.tied_positives, self.positive_starts = _tied(block[~negative], mixed)

    def chunk_bytes(self) -> int:
        # `replicates` works on a few resamples at a time in buffers of its own (about 10
        # bytes a record), whatever the size of the chunk.
        return 0

    def replicates(self, counts: np.ndarray) -> np.ndarray:
        # Integer arithmetic throughout (uint8 counts, int32 running sums, int64 products),
        # so each resample's statistic is an exact ratio of integers. A few resamples at a
        # time: gathering a row of counts in score order is a random walk over it, fast while
        # the rows being read fit in the processor's cache (about 256 KB of them).
        rows = counts.shape[0]
        group = max(1, min(rows, (1 << 18) // max(1, counts.shape[1])))
        negative = np.empty((group, self.negatives.size), dtype=np.uint8)
        positive = np.empty((group, self.positives.size), dtype=np.uint8)
        running = np.zeros((group, self.negatives.size + 1), dtype=np.int32)  # [0, w1, w1+w2..]
        below = np.empty((group, self.positives.size), dtype=np.int32)
        twice = np.empty(rows, dtype=np.int64)
        positives = np.empty(rows, dtype=np.int64)
        negatives = np.empty(rows, dtype=np.int64)
        for first in range(0, rows, group):
            last = min(rows, first + group)
            k = last - first
            neg, pos, run, low = negative[:k], positive[:k], running[:k], below[:k]
            np.take(counts[first:last], self.negatives, axis=1, out=neg)
            np.take(counts[first:last], self.positives, axis=1, out=pos)
            np.cumsum(neg, axis=1, dtype=np.int32, out=run[:, 1:])
            np.take(run, self.below, axis=1, out=low)  # negatives at or below each positive
            twice[first:last] = 2 * np.einsum("ij,ij->i", pos, low, dtype=np.int64)
            if self.tied_positives.size:
                pos_tied = np.add.reduceat(
                    pos[:, self.tied_positives], self.positive_starts, axis=1, dtype=np.int64
                )
                neg_tied = np.add.reduceat(
                    neg[:, self.tied_negatives], self.negative_starts, axis=1, dtype=np.int64
                )
                twice[first:last] -= np.einsum("ij,ij->i", pos_tied, neg_tied)
            positives[first:last] = pos.sum(axis=1, dtype=np.int64)
            negatives[first:last] = run[:, -1]
        return twice / (2.0 * positives * negatives)


def _tied(blocks: np.ndarray, mixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in one class's score order) of the records in mixed tie blocks, and where
    each block's run of them starts: the k-th run of either class is the k-th mixed block."""
    positions = np.flatnonzero(mixed[blocks])
    tied = blocks[positions]
    return positions, np.flatnonzero(np.r_[True, tied[1:] != tied[:-1]])


def _ratio(numerator: str, denominator: str):
    def formula(t: Mapping[str, np.ndarray]) -> np.ndarray:
        return t[numerator] / t[denominator]

    return formula


def _needs_binary(cls: Classes, what: str = "labels and predictions") -> Statistic:
    return undefined(f"needs binary 0/1 {what}; found {cls.describe()}")


def build(ctx: Context, key: str, unit: Unit) -> Result:
    cls = classes(ctx)
    if cls.lists:
        return undefined("needs single classes; labels are lists")
    if key in ("auroc", "brier_score", "ece"):
        return _probability(ctx, key, unit, cls)
    if key == "confusion_matrix":
        return _confusion_matrix(ctx, unit, cls)
    y, p = cls.y[unit.indices], cls.p[unit.indices]
    m = int(unit.indices.size)
    if m == 0:
        return undefined("no records")
    if key == "accuracy":
        return Additive(
            {"correct": (y == p).astype(np.float64), "count": np.ones(m)},
            _ratio("correct", "count"),
            n=m,
            reason_if_undefined="no records",
        )
    if key == "weighted_kappa":
        return Kappa(y, p, len(cls.labels), unit.indices)
    if key in ("precision", "recall", "f1") and not cls.binary:
        return Macro(key, y, p, len(cls.labels), unit.indices)
    if not cls.binary:
        return _needs_binary(cls)
    columns = _confusion_columns(ctx, unit)
    tp, fp, fn, tn = (float(columns[name].sum()) for name in ("tp", "fp", "fn", "tn"))
    if key == "precision":
        return Additive(
            columns,
            lambda t: t["tp"] / (t["tp"] + t["fp"]),
            n=m,
            reason_if_undefined="no positive predictions: precision is undefined",
        )
    if key == "recall":
        return Additive(
            columns,
            lambda t: t["tp"] / (t["tp"] + t["fn"]),
            n=m,
            reason_if_undefined="no positive labels: recall is undefined",
        )
    if key == "f1":
        return Additive(
            columns,
            lambda t: 2 * t["tp"] / ((t["tp"] + t["fn"]) + (t["tp"] + t["fp"])),
            n=m,
            reason_if_undefined="no positive labels or predictions: F1 is undefined",
        )
    if key == "specificity":
        return Additive(
            columns,
            lambda t: t["tn"] / (t["tn"] + t["fp"]),
            n=m,
            reason_if_undefined="no negative labels: specificity is undefined",
        )
    if key in ("lr_positive", "lr_negative"):
        if tp + fn == 0:
            reason = "no positive labels: sensitivity is undefined"
        elif tn + fp == 0:
            reason = "no negative labels: specificity is undefined"
        elif key == "lr_positive":
            reason = "specificity is 1 (no false positives): LR+ is infinite"
        else:
            reason = "specificity is 0 (no true negatives): LR- is infinite"
        formula = _lr_positive if key == "lr_positive" else _lr_negative
        return Additive(columns, formula, n=m, reason_if_undefined=reason)
    raise KeyError(key)


def _lr_positive(t: Mapping[str, np.ndarray]) -> np.ndarray:
    sensitivity = t["tp"] / (t["tp"] + t["fn"])
    specificity = t["tn"] / (t["tn"] + t["fp"])
    value = sensitivity / (1 - specificity)
    return np.where(np.isfinite(value), value, np.nan)


def _lr_negative(t: Mapping[str, np.ndarray]) -> np.ndarray:
    sensitivity = t["tp"] / (t["tp"] + t["fn"])
    specificity = t["tn"] / (t["tn"] + t["fp"])
    value = (1 - sensitivity) / specificity
    return np.where(np.isfinite(value), value, np.nan)


def _confusion_matrix(ctx: Context, unit: Unit, cls: Classes) -> MatrixValue:
    y, p = cls.y[unit.indices], cls.p[unit.indices]
    k = len(cls.labels)
    matrix = np.bincount(y * k + p, minlength=k * k).reshape(k, k) if y.size else None
    return MatrixValue(
        value=None if matrix is None else [[int(x) for x in row] for row in matrix],
        labels=list(cls.labels),
        n=int(y.size),
        reason=None if matrix is not None else "no records",
    )


def _probability(ctx: Context, key: str, unit: Unit, cls: Classes) -> Result:
    if not cls.y01:
        return undefined(f"needs binary 0/1 labels; found {cls.describe()}")
    y_all, _ = binary_values(ctx)
    y = y_all[unit.indices]
    score = ctx.floats("score")[unit.indices]
    m = int(y.size)
    if m == 0:
        return undefined("no records")
    if key == "auroc":
        present = sorted({int(v) for v in np.unique(y)})
        if len(present) < 2:
            return undefined(f"only one class ({present[0]}) in label: AUROC needs both", n=m)
        return Auroc(y.astype(np.int64), score, unit.indices)
    if key == "brier_score":
        return Additive(
            {"sq": (score - y) ** 2, "count": np.ones(m)},
            _ratio("sq", "count"),
            n=m,
            reason_if_undefined="no records",
            value=float(np.average((y - score) ** 2)),
        )
    return _ece_statistic(y, score, unit)


def _ece_statistic(y: np.ndarray, score: np.ndarray, unit: Unit) -> Statistic:
    """ECE from the residuals summed per score bin: one residual a record and its bin
    (`column_segments`), not ten columns that are zero outside their bin."""
    m = int(y.size)
    bins = np.minimum(np.floor(score * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    residual = y - score
    # The estimate sums each bin's residuals with the unit's other records as zeros, as it
    # always has, so its value does not change with the storage.
    totals = {"count": np.array([float(m)])}
    for b in range(ECE_BINS):
        totals[f"ece{b}"] = np.array([np.sum(np.where(bins == b, residual, 0.0))])
    return Additive(
        {"count": np.ones(m, dtype=bool), "ece": residual},
        _ece,
        n=m,
        reason_if_undefined="no records",
        value=float(_ece(totals)[0]),
        column_segments={"ece": (bins.astype(np.uint8), ECE_BINS)},
    )


def _ece(t: Mapping[str, np.ndarray]) -> np.ndarray:
    total = np.abs(t["ece0"])
    for b in range(1, ECE_BINS):
        total = total + np.abs(t[f"ece{b}"])
    return total / t["count"]


def build_triage(ctx: Context, key: str, unit: Unit) -> Result:
    label = ctx.floats("label")[unit.indices]
    prediction = ctx.floats("prediction")[unit.indices]
    m = int(label.size)
    if m == 0:
        return undefined("no records")
    column = {
        "triage_accuracy": prediction == label,
        "under_triage_rate": prediction > label,
        "over_triage_rate": prediction < label,
    }[key]
    return Additive(
        {"hit": column.astype(np.float64), "count": np.ones(m)},
        _ratio("hit", "count"),
        n=m,
        reason_if_undefined="no records",
    )


BUILDERS: dict[str, Builder] = {
    key: build
    for key in (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "specificity",
        "lr_positive",
        "lr_negative",
        "confusion_matrix",
        "weighted_kappa",
        "auroc",
        "brier_score",
        "ece",
    )
}
BUILDERS.update(
    {key: build_triage for key in ("triage_accuracy", "under_triage_rate", "over_triage_rate")}
)
