"""Survival, robustness, coding, entity, operational and survey metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .bootstrap import Additive, Statistic, Unit, mean_of, resample_counts, undefined
from .context import Builder, Context, Result

CODE_NORMALISATION = (
    "codes: surrounding spaces removed, upper case, dots removed; category = first three "
    "characters; lists compared as sets"
)


# --- C-index ------------------------------------------------------------------------------


class ConcordanceIndex(Statistic):
    """Harrell's C as lifelines computes it (`concordance_index(time, -risk, event)`), with
    resamples evaluated as weighted pair counts in one pass over a Fenwick tree whose nodes
    hold a vector of weights (one per resample)."""

    own_resampling = True

    def __init__(
        self,
        time: np.ndarray,
        event: np.ndarray,
        risk: np.ndarray,
        indices: np.ndarray,
        n_total: int,
        value: float,
    ):
        super().__init__(value=value, n=int(indices.size))
        self.indices, self.n_total = indices, n_total
        predicted = -risk
        died = event == 1
        self.values = np.unique(predicted[died])
        r = self.values.size
        below = np.searchsorted(self.values, predicted, side="left")
        equal = (below < r) & (self.values[np.minimum(below, r - 1)] == predicted)
        # lifelines' order: by time; at a tied time the deaths first (compared with earlier
        # deaths, then added to the pool), then the censored (compared with the pool).
        order = np.lexsort((~died, time))
        ops: list[tuple[int, int, int, bool]] = []  # (kind, position in unit, rank, equal)
        i = 0
        while i < order.size:
            j = i
            t = time[order[i]]
            while j < order.size and time[order[j]] == t:
                j += 1
            batch = order[i:j]
            deaths = batch[died[batch]]
            censored = batch[~died[batch]]
            ops += [(0, k, int(below[k]), bool(equal[k])) for k in deaths]
            ops += [(1, k, int(below[k]), True) for k in deaths]
            ops += [(0, k, int(below[k]), bool(equal[k])) for k in censored]
            i = j
        self.ops = ops
        self.query_paths = [self._query_path(k) for k in range(r + 1)]
        self.update_paths = [self._update_path(k, r) for k in range(r)]

    @staticmethod
    def _query_path(k: int) -> np.ndarray:
        path = []
        while k > 0:
            path.append(k)
            k -= k & -k
        return np.array(path, dtype=np.int64)

    @staticmethod
    def _update_path(position: int, size: int) -> np.ndarray:
        path = []
        k = position + 1
        while k <= size:
            path.append(k)
            k += k & -k
        return np.array(path, dtype=np.int64)

    def weighted(self, weights: np.ndarray) -> np.ndarray:
        """C-index for each row of `weights` (rows: resamples; columns: unit records)."""
        c = weights.shape[0]
        tree = np.zeros((self.values.size + 1, c))
        pool = np.zeros(c)
        correct, tied, pairs = np.zeros(c), np.zeros(c), np.zeros(c)
        columns = np.ascontiguousarray(weights.T, dtype=np.float64)
        for kind, k, rank, equal in self.ops:
            w = columns[k]
            if kind == 1:
                tree[self.update_paths[rank]] += w
                pool += w
                continue
            less = tree[self.query_paths[rank]].sum(axis=0)
            correct += w * less
            pairs += w * pool
            if equal:
                tied += w * (tree[self.query_paths[rank + 1]].sum(axis=0) - less)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (correct + tied / 2) / pairs

    def own_replicates(self, seed: int, start: int, stop: int) -> np.ndarray:
        out = np.empty(stop - start)
        chunk = max(1, (1 << 24) // max(self.n_total, 1))
        for first in range(start, stop, chunk):
            last = min(stop, first + chunk)
            counts = resample_counts(seed, self.n_total, first, last)
            out[first - start : last - start] = self.weighted(np.take(counts, self.indices, axis=1))
        return out


def _c_index(ctx: Context, unit: Unit) -> Statistic:
    from lifelines.utils import concordance_index

    idx = unit.indices
    time, event, risk = ctx.floats("time")[idx], ctx.floats("event")[idx], ctx.floats("risk")[idx]
    try:
        value = float(concordance_index(time, -risk, event))
    except ZeroDivisionError:
        return undefined("no comparable pairs (no event before another record's time)", n=idx.size)
    return ConcordanceIndex(time, event, risk, idx, ctx.n, value)


# --- latency percentiles ---------------------------------------------------------------------


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own linear interpolation for percentiles (numpy.lib._function_base_impl._lerp)."""
    diff = b - a
    out = a + diff * t
    return np.where(t >= 0.5, b - diff * (1 - t), out)


class Percentile(Statistic):
    """`numpy.percentile(values, q)` (linear), and the same on each weighted resample."""

    def __init__(self, values: np.ndarray, q: float, indices: np.ndarray):
        super().__init__(value=float(np.percentile(values, q)), n=int(values.size))
        order = np.argsort(values, kind="stable")
        self.sorted = values[order]
        self.order = indices[order]
        self.quantile = np.true_divide(q, 100)

    def replicates(self, counts: np.ndarray) -> np.ndarray:
        weights = np.take(counts, self.order, axis=1).astype(np.float64)
        cumulative = np.cumsum(weights, axis=1)
        size = cumulative[:, -1]
        virtual = (size - 1) * self.quantile
        previous = np.floor(virtual)
        above = virtual >= size - 1
        previous = np.where(above, size - 1, previous)
        following = np.where(above, size - 1, previous + 1)
        gamma = virtual - np.floor(virtual)
        # the value at sorted position r is the first record whose running count exceeds r
        low = self.sorted[
            np.minimum((cumulative <= previous[:, None]).sum(axis=1), self.sorted.size - 1)
        ]
        high = self.sorted[
            np.minimum((cumulative <= following[:, None]).sum(axis=1), self.sorted.size - 1)
        ]
        result = lerp(low, high, gamma)
        return np.where(size > 0, result, np.nan)


# --- codes and entities -------------------------------------------------------------------


def normalise_code(code: Any) -> str:
    return str(code).strip().upper().replace(".", "")


def _code_sets(value: Any, category: bool) -> frozenset[str]:
    items = value if isinstance(value, tuple) else (value,)
    codes = (normalise_code(item) for item in items)
    return frozenset(code[:3] if category else code for code in codes)


def _codes(ctx: Context, key: str) -> np.ndarray:
    def compute() -> np.ndarray:
        category = key == "code_category_accuracy"
        labels, predictions = ctx.dataset.column("label"), ctx.dataset.column("prediction")
        ctx.normalisation["codes"] = CODE_NORMALISATION
        return np.array(
            [
                _code_sets(y, category) == _code_sets(p, category)
                for y, p in zip(labels, predictions, strict=True)
            ],
            dtype=np.float64,
        )

    return ctx.once(f"codes:{key}", compute)


def _entities(ctx: Context) -> dict[str, np.ndarray]:
    def compute() -> dict[str, np.ndarray]:
        labels, predictions = ctx.dataset.column("label"), ctx.dataset.column("prediction")
        gold = [set(y) for y in labels]
        pred = [set(p) for p in predictions]
        ctx.normalisation["entities"] = (
            "spans [start, end, type] matched exactly; duplicate spans in a record count once"
        )
        return {
            "tp": np.array([len(g & p) for g, p in zip(gold, pred, strict=True)], dtype=float),
            "pred": np.array([len(p) for p in pred], dtype=float),
            "gold": np.array([len(g) for g in gold], dtype=float),
        }

    return ctx.once("entities", compute)


def _entity(ctx: Context, key: str, unit: Unit) -> Statistic:
    columns = {name: values[unit.indices] for name, values in _entities(ctx).items()}
    formulas = {
        "entity_precision": (lambda t: t["tp"] / t["pred"], "no predicted entities"),
        "entity_recall": (lambda t: t["tp"] / t["gold"], "no entities in the labels"),
        "entity_f1": (
            lambda t: 2 * t["tp"] / (t["pred"] + t["gold"]),
            "no entities in labels or predictions",
        ),
    }
    formula, reason = formulas[key]
    return Additive(columns, formula, n=int(unit.indices.size), reason_if_undefined=reason)


# --- the rest --------------------------------------------------------------------------------


def _perplexity(ctx: Context, unit: Unit) -> Statistic:
    logprobs = [ctx.dataset.column("token_logprobs")[i] for i in unit.indices]
    sums = np.array([math.fsum(lp) for lp in logprobs], dtype=np.float64)
    tokens = np.array([len(lp) for lp in logprobs], dtype=np.float64)
    total = int(tokens.sum())
    if total == 0:
        return undefined("no tokens: perplexity is undefined", n=len(logprobs))
    everything = np.fromiter((x for lp in logprobs for x in lp), dtype=np.float64, count=total)
    return Additive(
        {"logprob": sums, "tokens": tokens},
        _perplexity_formula,
        n=len(logprobs),
        reason_if_undefined="no tokens: perplexity is undefined",
        value=float(np.exp(-np.sum(everything) / total)),
    )


def _perplexity_formula(t: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.exp(-t["logprob"] / t["tokens"])


def _attack(ctx: Context, unit: Unit) -> Statistic:
    def compute() -> tuple[np.ndarray, np.ndarray]:
        label = ctx.dataset.column("label")
        prediction = ctx.dataset.column("prediction")
        perturbed = ctx.dataset.column("perturbed_prediction")
        correct = np.array([y == p for y, p in zip(label, prediction, strict=True)], dtype=float)
        flipped = np.array(
            [y == p and q != y for y, p, q in zip(label, prediction, perturbed, strict=True)],
            dtype=float,
        )
        return correct, flipped

    correct, flipped = ctx.once("attack", compute)
    return Additive(
        {"correct": correct[unit.indices], "flipped": flipped[unit.indices]},
        lambda t: t["flipped"] / t["correct"],
        n=int(unit.indices.size),
        reason_if_undefined="no record has prediction equal to label",
    )


_MEANS = {
    "hallucination_rate": "hallucinated",
    "task_completion_rate": "completed",
    "empathy_score": "empathy",
    "trust_score": "trust",
}


def build(ctx: Context, key: str, unit: Unit) -> Result:
    idx = unit.indices
    if idx.size == 0:
        return undefined("no records")
    if key == "c_index":
        return _c_index(ctx, unit)
    if key in ("latency_p50_ms", "latency_p95_ms"):
        q = 50.0 if key == "latency_p50_ms" else 95.0
        return Percentile(ctx.floats("latency_ms")[idx], q, idx)
    if key in _MEANS:
        return mean_of(ctx.floats(_MEANS[key])[idx])
    if key in ("code_exact_match", "code_category_accuracy"):
        return mean_of(_codes(ctx, key)[idx])
    if key.startswith("entity_"):
        return _entity(ctx, key, unit)
    if key == "perplexity":
        return _perplexity(ctx, unit)
    if key == "attack_success_rate":
        return _attack(ctx, unit)
    raise KeyError(key)


BUILDERS: dict[str, Builder] = {
    key: build
    for key in (
        "c_index",
        "latency_p50_ms",
        "latency_p95_ms",
        *_MEANS,
        "code_exact_match",
        "code_category_accuracy",
        "entity_precision",
        "entity_recall",
        "entity_f1",
        "perplexity",
        "attack_success_rate",
    )
}
