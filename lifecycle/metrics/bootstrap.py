"""The vectorised bootstrap: percentile intervals, and simultaneous bounds for fairness.

Resample b draws n record indices with replacement from its own generator,
`numpy.random.Generator(PCG64(SeedSequence(seed, spawn_key=(b,))))`, so a resample does not
depend on how resamples are chunked or which metrics were requested. Every metric turns its
records into per-record sufficient statistics once ("columns"); a chunk of resamples becomes a
matrix of counts (how often each record was drawn), and one matrix product gives every metric's
totals for every resample in the chunk. Metrics that are not sums of per-record terms (AUROC,
C-index, percentiles) compute their replicates from the same counts.

Between-group differences (largest minus smallest rate) are biased upwards and not smooth
where groups tie, so their percentile interval can lie wholly above the estimate and never
covers a difference of zero. Their statistics also give per-resample "components" (the
pairwise group differences) and `pairwise_interval` builds the interval from those instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

CONFIDENCE = 0.95
PERCENTILES = (2.5, 97.5)
CI_METHOD = "percentile bootstrap"
PAIRWISE_METHOD = "simultaneous bootstrap bounds on the pairwise group differences (max-t)"
RESAMPLING = (
    "records drawn with replacement; resample b uses "
    "numpy.random.Generator(PCG64(SeedSequence(seed, spawn_key=(b,)))).integers(0, n, n); "
    "subgroups and fairness use the same resamples restricted to their records; consistency "
    "resamples prompt_ids with spawn_key=(1, b)"
)
CHUNK_ELEMENTS = 1 << 22  # resamples x records per chunk: bounds memory at any file size
PARALLEL_ELEMENTS = 1 << 24  # below this much work one thread is as fast
_EXACT_FLOAT32 = float(1 << 24)


def resample_generator(seed: int, b: int, stream: int | None = None) -> np.random.Generator:
    """The generator of resample `b` (and of a separate `stream` of resamples if given)."""
    key = (b,) if stream is None else (stream, b)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def resample_indices(seed: int, n: int, b: int) -> np.ndarray:
    """The n record indices of resample `b`."""
    return resample_generator(seed, b).integers(0, n, size=n, dtype=np.int64)


def resample_counts(seed: int, n: int, start: int, stop: int) -> np.ndarray:
    """(stop - start, n) uint8 counts: how often each record is drawn in each resample.

    A count above 255 would need one record drawn 256 times among n draws, a chance below
    1e-500 for any n; it is checked all the same, never wrapped silently.
    """
    counts = np.empty((stop - start, n), dtype=np.uint8)
    for row, b in enumerate(range(start, stop)):
        drawn = np.bincount(resample_indices(seed, n, b), minlength=n)
        counts[row] = drawn
        if n > 255 and int(counts[row].sum(dtype=np.int64)) != n:  # pragma: no cover
            raise OverflowError("a record was drawn more than 255 times in one resample")
    return counts


def cluster_counts(seed: int, k: int, start: int, stop: int, stream: int = 1) -> np.ndarray:
    """Counts over k clusters (e.g. prompt_ids) for resamples start..stop-1."""
    counts = np.empty((stop - start, k), dtype=np.float64)
    for row, b in enumerate(range(start, stop)):
        draws = resample_generator(seed, b, stream).integers(0, k, size=k, dtype=np.int64)
        counts[row] = np.bincount(draws, minlength=k)
    return counts


def percentile_interval(replicates: np.ndarray) -> tuple[float | None, float | None, int]:
    """(low, high, number of undefined replicates) of the central 95% interval."""
    finite = replicates[np.isfinite(replicates)]
    undefined = int(replicates.size - finite.size)
    if finite.size == 0:
        return None, None, undefined
    low, high = np.percentile(finite, PERCENTILES)
    return float(low), float(high), undefined


def pairwise_interval(
    estimates: np.ndarray, replicates: np.ndarray, *, floor: float = 0.0, ceiling: float = 1.0
) -> tuple[float, float]:
    """The 95% interval of max_j |d_j| from the pairwise differences d_j: their estimates (c,)
    and replicates (resamples, c), NaN where a resample lacks one of the pair's groups.

    A max-t simultaneous box d_j in d^_j +- t * se_j (se_j the root mean square of d*_j - d^_j
    over resamples, t the 95th percentile over resamples of max_j |d*_j - d^_j| / se_j) holds
    every d_j at once with 95% confidence; the interval is the range of max_j |d_j| over that
    box, clipped to floor..ceiling. It contains the estimate by construction and keeps its
    coverage where groups tie (a true difference of 0), where the percentile interval of the
    maximum covers nothing.
    """
    if estimates.size == 0:  # one group: 0 by definition
        return floor, floor
    usable = np.isfinite(replicates)
    kept = usable.sum(axis=0)
    centred = np.where(usable, replicates, 0.0) - np.where(usable, estimates, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(kept > 0, np.sqrt((centred**2).sum(axis=0) / kept), 0.0)
        # A component that never moves (two rates that are 0 in every resample) adds no
        # uncertainty, and must not divide by zero.
        standardised = np.where(usable & (se > 0), np.abs(centred) / se, 0.0)
    worst = standardised.max(axis=1)[usable.any(axis=1)]
    t = float(np.percentile(worst, 95)) if worst.size else 0.0
    magnitude = np.abs(estimates)
    low = max(floor, float(np.max(magnitude - t * se)))
    high = min(ceiling, float(np.max(magnitude + t * se)))
    return low, high


@dataclass
class Statistic:
    """One scalar metric over one set of records: its point value and how to recompute it on a
    resample.

    Additive statistics give `columns` (per-record values over the unit's records, in unit
    order) and `combine` (totals -> value, vectorised over resamples). Others implement
    `replicates(counts)` on the counts over all records, or `own_replicates` when they
    resample something other than records. Additive statistics whose interval is not the
    percentile one (`interval_method`) also give `components(totals)`: `run` keeps their
    replicates in `component_replicates`, beside `component_estimates` on all records.
    """

    value: float | None
    n: int
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    # Statistics of one unit that declare the same column names with the same values (the
    # binary confusion counts) may share them; all other columns are private.
    share_columns: bool = False
    component_estimates: np.ndarray | None = None
    component_replicates: np.ndarray | None = None

    interval_method = CI_METHOD

    def combine(self, totals: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def replicates(self, counts: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def components(self, totals: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    own_resampling = False

    def own_replicates(self, seed: int, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError


def undefined(reason: str, n: int = 0) -> Statistic:
    """A metric that cannot be computed for these records."""
    return Statistic(value=None, n=n, reason=reason)


class Additive(Statistic):
    """value = formula(column totals); `formula` works on numpy arrays of totals."""

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        formula: Callable[[Mapping[str, np.ndarray]], np.ndarray],
        *,
        n: int,
        reason_if_undefined: str,
        value: float | None = None,
        share_columns: bool = False,
    ):
        super().__init__(value=None, n=n, columns=columns, share_columns=share_columns)
        self.formula = formula
        if value is None:
            totals = {name: np.array([np.sum(column)]) for name, column in columns.items()}
            with np.errstate(divide="ignore", invalid="ignore"):
                value = float(formula(totals)[0])
        if value is None or not np.isfinite(value):
            self.value, self.reason = None, reason_if_undefined
        else:
            self.value = value

    def combine(self, totals: Mapping[str, np.ndarray]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.formula(totals), dtype=np.float64)


def mean_of(
    values: np.ndarray, usable: np.ndarray | None = None, *, n_reason: str = "no records"
) -> Statistic:
    """The mean of per-record values over the unit's records (those `usable`, if given)."""
    values = np.asarray(values, dtype=np.float64)
    if usable is None:
        usable = np.ones(values.size, dtype=bool)
    kept = values[usable]
    if kept.size == 0:
        return undefined(n_reason)
    return Additive(
        {"sum": np.where(usable, values, 0.0), "count": usable.astype(np.float64)},
        lambda t: t["sum"] / t["count"],
        n=int(kept.size),
        reason_if_undefined=n_reason,
        value=float(np.mean(kept)),
    )


@dataclass
class Unit:
    """The records a set of statistics is computed over: all records, or one subgroup."""

    key: str
    indices: np.ndarray  # positions in the file, ascending
    attribute: str | None = None
    group: str | None = None

    @property
    def size(self) -> int:
        return int(self.indices.size)


@dataclass
class _Store:
    matrix: np.ndarray
    names: dict[tuple[object, ...], int]


def _column_stores(
    n: int, placed: Sequence[tuple[Unit, Statistic]]
) -> tuple[_Store, _Store, dict[int, dict[str, tuple[str, int]]]]:
    """Scatter every additive statistic's columns into two (column, record) matrices: float32
    for integer columns whose sums stay exact, float64 for the rest. Columns are private to
    their statistic unless it shares them (by name, within its unit)."""
    sources: dict[tuple[object, ...], tuple[Unit, np.ndarray, bool]] = {}
    where: dict[int, dict[str, tuple[object, ...]]] = {}
    for unit, stat in placed:
        mapping = where[id(stat)] = {}
        for name, values in stat.columns.items():
            key = (unit.key, name) if stat.share_columns else (unit.key, id(stat), name)
            mapping[name] = key
            if key in sources:
                continue
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (unit.size,):
                raise ValueError(f"column {name!r} must have one value per record of the unit")
            exact = values.size == 0 or bool(
                np.all(values == np.round(values)) and np.abs(values).max() * n < _EXACT_FLOAT32
            )
            sources[key] = (unit, values, exact)
    stores = {}
    for kind, dtype in (("int", np.float32), ("real", np.float64)):
        keys = [key for key, (_, _, exact) in sources.items() if exact == (kind == "int")]
        # (columns, records) in C order: counts @ matrix.T is the fastest layout for this
        # short-and-very-wide product.
        matrix = np.zeros((len(keys), n), dtype=dtype)
        for row, key in enumerate(keys):
            unit, values, _ = sources[key]
            matrix[row, unit.indices] = values
        stores[kind] = _Store(matrix=matrix, names={key: row for row, key in enumerate(keys)})
    located = {
        stat_id: {
            name: ("int", stores["int"].names[key])
            if key in stores["int"].names
            else ("real", stores["real"].names[key])
            for name, key in mapping.items()
        }
        for stat_id, mapping in where.items()
    }
    return stores["int"], stores["real"], located


def run(
    n: int,
    placed: Sequence[tuple[Unit, Statistic]],
    *,
    seed: int,
    resamples: int,
    progress: Callable[[float, str], None] | None = None,
    workers: int | None = None,
) -> dict[int, np.ndarray]:
    """Replicates (resamples,) for every statistic with a value, keyed by id(statistic), and
    the component replicates of those that have component estimates.

    Chunks of resamples run on up to `workers` threads (default: two where the machine has
    them and the work is large): numpy releases the GIL in the heavy steps, and each resample
    has its own generator, so the result does not depend on the threading.
    """
    active = [(unit, stat) for unit, stat in placed if stat.value is not None]
    results = {id(stat): np.full(resamples, np.nan) for _, stat in active}
    if resamples == 0 or not active:
        return results
    for _, stat in active:
        if stat.component_estimates is not None:
            shape = (resamples, stat.component_estimates.size)
            stat.component_replicates = np.full(shape, np.nan)
    resampler = _Resampler(n, seed, active, results)
    chunk = max(1, min(resamples, CHUNK_ELEMENTS // max(n, 1)))
    starts = list(range(0, resamples, chunk))
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n * resamples >= PARALLEL_ELEMENTS else 1
    own_share = 0.1 if resampler.own else 0.0
    with threadpool_limits(limits=1, user_api="blas"):
        # Single-threaded BLAS: these products are small, and a multi-threaded BLAS on a busy
        # machine (a Celery worker beside a web server) can be slower by orders of magnitude.
        if resampler.shared:
            done = 0

            def finished(stop: int) -> None:
                # After every chunk: the caller's callback throttles (a job's heartbeat must
                # not wait for a fifth of the chunks of a large file).
                nonlocal done
                done += 1
                fraction = done / len(starts) * (1 - own_share)
                if progress is not None:
                    progress(fraction, f"bootstrap: {done} of {len(starts)} chunks of resamples")

            bounds = [(start, min(resamples, start + chunk)) for start in starts]
            if workers > 1 and len(bounds) > 1:
                pool = ThreadPoolExecutor(max_workers=workers)
                try:
                    futures = [pool.submit(resampler.chunk, *b) for b in bounds]
                    for future in futures:
                        finished(future.result())
                finally:
                    # A progress callback may abort the run (a reclaimed job, a time limit):
                    # drop the chunks not started rather than finishing them.
                    pool.shutdown(wait=True, cancel_futures=True)
            else:
                for start, stop in bounds:
                    finished(resampler.chunk(start, stop))
        for index, stat in enumerate(resampler.own):
            if progress is not None and index:
                fraction = 1 - own_share + own_share * index / len(resampler.own)
                progress(
                    fraction,
                    f"bootstrap: {index} of {len(resampler.own)} self-resampling statistics",
                )
            _fill(
                results[id(stat)],
                stat,
                0,
                resamples,
                lambda s=stat: s.own_replicates(seed, 0, resamples),
            )
        if resampler.own and progress is not None:
            progress(1.0, f"bootstrap: {resamples} resamples")
    return results


class _Resampler:
    """Everything one chunk of resamples needs, computed once."""

    def __init__(
        self,
        n: int,
        seed: int,
        active: list[tuple[Unit, Statistic]],
        results: dict[int, np.ndarray],
    ):
        self.n, self.seed, self.results = n, seed, results
        self.additive = [(u, s) for u, s in active if s.columns]
        self.weighted = [s for _, s in active if not s.columns and not s.own_resampling]
        self.own = [s for _, s in active if s.own_resampling]
        self.shared = bool(self.additive or self.weighted)
        self.integer, self.real, self.where = _column_stores(n, self.additive)

    def chunk(self, start: int, stop: int) -> int:
        counts = resample_counts(self.seed, self.n, start, stop)
        if self.additive:
            weights = counts.astype(np.float32)
            totals_int = (weights @ self.integer.matrix.T).astype(np.float64)
            totals_real = (
                weights.astype(np.float64) @ self.real.matrix.T
                if self.real.matrix.shape[0]
                else totals_int
            )
            del weights
            for _, stat in self.additive:
                totals = {
                    name: (totals_int if store == "int" else totals_real)[:, col]
                    for name, (store, col) in self.where[id(stat)].items()
                }
                _fill(
                    self.results[id(stat)], stat, start, stop, lambda s=stat, t=totals: s.combine(t)
                )
                if stat.component_replicates is not None:
                    _fill(
                        stat.component_replicates,
                        stat,
                        start,
                        stop,
                        lambda s=stat, t=totals: s.components(t),
                    )
        for stat in self.weighted:
            _fill(
                self.results[id(stat)], stat, start, stop, lambda s=stat, c=counts: s.replicates(c)
            )
        return stop


def _fill(
    target: np.ndarray,
    stat: Statistic,
    start: int,
    stop: int,
    compute: Callable[[], np.ndarray],
) -> None:
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            target[start:stop] = compute()
    except Exception as error:  # an interval never crashes the run either
        note = f"no interval: resampling failed ({type(error).__name__}: {error})"
        if note not in stat.warnings:
            stat.warnings.append(note)
        target[start:stop] = np.nan
