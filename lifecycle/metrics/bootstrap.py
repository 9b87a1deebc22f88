"""The vectorised bootstrap: percentile intervals, and simultaneous bounds for fairness.

Resample b draws n record indices with replacement from its own generator,
`numpy.random.Generator(PCG64(SeedSequence(seed, spawn_key=(b,))))`, so a resample does not
depend on how resamples are chunked or which metrics were requested. Every metric turns its
records into per-record sufficient statistics once ("columns"); a chunk of resamples becomes a
matrix of counts (how often each record was drawn), and products of those counts with the
columns give every metric's totals for every resample in the chunk. Metrics that are not sums
of per-record terms (AUROC, C-index, percentiles) compute their replicates from the same
counts.

Between-group differences (largest minus smallest rate) are biased upwards and not smooth
where groups tie, so their percentile interval can lie wholly above the estimate and never
covers a difference of zero. Their statistics also give per-resample "components" (the
pairwise group differences) and `pairwise_interval` builds the interval from those instead.

Scale (1,000,000 records): every column is stored over its own records only (a subgroup's
columns over the subgroup, a fairness difference's per-group counts over the group), never
padded to all records, and a column split by a key (ECE's residuals by score bin) is one value
a record plus the key. Integer columns are summed exactly (float32 products whose partial sums
are integers below 2**24), so their totals equal those of the full-width product bit for bit;
real-valued columns are summed per resample by numpy reductions over fixed panels of records,
so they do not depend on chunking or threading (the full-width BLAS product did, in the last
bit). Chunks are sized by memory (`chunk_resamples`): the count matrix and the working arrays
of the chunks in flight fit `CHUNK_BYTES`, whatever the number of records.
"""

from __future__ import annotations

import hashlib
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
# Working memory of the chunks of resamples in flight, all threads together: the (resamples,
# records) count matrix plus what the statistics need beside it (`Statistic.chunk_bytes`).
CHUNK_BYTES = 256 << 20
# Enough resamples a chunk to amortise reading the stored columns once per chunk; few enough
# that progress is reported often and two threads share the work.
MAX_CHUNK_RESAMPLES = 64
# Records per panel: columns are summed panel by panel, so the float copies of the counts stay
# small (64 resamples x 8,192 records x 8 bytes = 4 MB) at any file size.
PANEL_RECORDS = 1 << 13
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
        # int64 draws: bincount converts any other index type first, at three times the cost
        counts[row] = np.bincount(resample_indices(seed, n, b), minlength=n)
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
    order) and `combine` (totals -> value, vectorised over resamples). A column that is zero
    outside part of the unit (a fairness difference's per-group counts) may hold only that
    part's values and name the part in `column_units`; one summed per key (ECE's residuals per
    score bin) names its keys in `column_segments`. Columns with equal values over the same
    records are stored and summed once, whichever statistics declare them. Others implement
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
    # Column name -> the records its values are over, when not the statistic's unit. Units with
    # the same key must have the same records (the subgroup `group:sex=F` is one set of records
    # whichever statistic names it), so their columns are stored and summed together.
    column_units: dict[str, Unit] = field(default_factory=dict)
    # Column name -> (segment of each of its records, number of segments): the column is summed
    # per segment into totals named f"{name}{segment}" (ECE's residuals per score bin), one
    # value a record instead of one column per segment that is zero outside it.
    column_segments: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    component_estimates: np.ndarray | None = None
    component_replicates: np.ndarray | None = None

    interval_method = CI_METHOD

    def chunk_bytes(self) -> int:
        """Bytes per resample that `replicates(counts)` allocates beside the counts (the chunk
        plan): by default a float64 copy of the counts over its records, and as much again."""
        return 16 * self.n

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
        column_units: dict[str, Unit] | None = None,
        column_segments: dict[str, tuple[np.ndarray, int]] | None = None,
    ):
        super().__init__(
            value=None,
            n=n,
            columns=columns,
            column_units=column_units or {},
            column_segments=column_segments or {},
        )
        self.formula = formula
        if value is None:
            totals = {
                name: np.array([np.sum(column)])
                for name, column in columns.items()
                if name not in self.column_segments
            }
            for name, (segment, size) in self.column_segments.items():
                sums = np.bincount(segment, weights=columns[name], minlength=size)
                totals.update({f"{name}{k}": sums[k : k + 1] for k in range(size)})
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


def chunk_resamples(
    bytes_per_resample: int, resamples: int, *, workers: int = 1, budget: int | None = None
) -> int:
    """Resamples per chunk: as many as fit the budget (default `CHUNK_BYTES`) shared by the
    `workers` chunks in flight, at most `MAX_CHUNK_RESAMPLES`, at least one.

    `bytes_per_resample` is what one resample of a chunk holds: its row of counts (a byte per
    record) and the largest working set beside it (`_Resampler.bytes_per_resample`). The plan
    depends on memory, not on a fixed number of elements, so a million records still gets
    chunks large enough to amortise reading the stored columns.
    """
    budget = CHUNK_BYTES if budget is None else budget
    fits = budget // max(1, workers) // max(1, bytes_per_resample)
    return int(max(1, min(resamples, MAX_CHUNK_RESAMPLES, fits)))


class _Block:
    """The additive columns over one set of records (a unit or part of one), stored over those
    records only, and their totals on a chunk of resamples.

    Records are read panel by panel, each panel once per chunk. Integer columns (exact in
    float32 at this file size: every partial sum is an integer below 2**24) are summed by one
    float32 product for the chunk. Real columns are summed per resample by numpy's reductions
    (a pairwise sum per row and panel), so a resample's totals do not depend on which other
    resamples share its chunk or thread. Within a panel, records are ordered by the segment of
    the first segmented column, so its segments are contiguous and summed the same way.
    """

    def __init__(
        self,
        n: int,
        indices: np.ndarray,
        integer: list[np.ndarray],
        real: list[np.ndarray],
        segmented: list[tuple[np.ndarray, np.ndarray, int]],
    ):
        m = int(indices.size)
        self.size = m
        self.panels = [(a, min(m, a + PANEL_RECORDS)) for a in range(0, m, PANEL_RECORDS)]
        order = None
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []  # per panel: (run starts, segments)
        if segmented:
            segment = np.asarray(segmented[0][1], dtype=np.intp)
            order = np.empty(m, dtype=np.intp)
            for a, b in self.panels:
                local = np.argsort(segment[a:b], kind="stable")
                order[a:b] = a + local
                ordered = segment[a:b][local]
                starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
                self.runs.append((starts, ordered[starts]))

        def arranged(values: np.ndarray, dtype: type) -> np.ndarray:
            values = np.asarray(values, dtype=dtype)
            return values if order is None else values[order]

        # An all-records block in file order reads the counts without a copy.
        if order is None and m == n:
            self.positions = None
        else:
            self.positions = arranged(indices, np.intp)
        self.integer = np.stack([arranged(c, np.float32) for c in integer]) if integer else None
        self.real = np.stack([arranged(c, np.float64) for c in real]) if real else None
        self.segmented = [
            (arranged(values, np.float64), arranged(segment, np.intp), size)
            for values, segment, size in segmented
        ]
        self.integer_count, self.real_count = len(integer), len(real)
        self.segment_count = sum(size for *_, size in segmented)

    def totals(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per resample: (integer totals, real totals, segment totals of the segmented columns
        one after another)."""
        rows = counts.shape[0]
        integer = np.zeros((rows, self.integer_count))
        real = np.zeros((rows, self.real_count))
        segments = np.zeros((rows, self.segment_count))
        for index, (a, b) in enumerate(self.panels):
            if self.positions is None:
                panel = counts[:, a:b]
            else:
                panel = np.take(counts, self.positions[a:b], axis=1)
            if self.integer is not None:
                integer += panel.astype(np.float32) @ self.integer[:, a:b].T
            if self.real is None and not self.segmented:
                continue
            weights = panel.astype(np.float64)
            product = np.empty_like(weights)
            if self.real is not None:
                for column, values in enumerate(self.real):
                    # a contiguous reduction per row: the same pairwise sum whatever the rows
                    np.multiply(weights, values[a:b], out=product)
                    real[:, column] += product.sum(axis=1)
            offset = 0
            for number, (values, segment, size) in enumerate(self.segmented):
                np.multiply(weights, values[a:b], out=product)
                if number == 0:  # contiguous runs of one segment: a pairwise sum per run
                    starts, which = self.runs[index]
                    segments[:, offset + which] += np.add.reduceat(product, starts, axis=1)
                else:  # one bincount for the panel's rows, each row's records in order
                    where = (segment[a:b] + (size * np.arange(rows))[:, None]).ravel()
                    sums = np.bincount(where, weights=product.ravel(), minlength=rows * size)
                    segments[:, offset : offset + size] += sums.reshape(rows, size)
                offset += size
        return integer, real, segments


class _Store:
    """Every additive statistic's columns, in blocks by the records they are over, with equal
    columns over the same records stored once."""

    def __init__(self, n: int, placed: Sequence[tuple[Unit, Statistic]]):
        self.n = n
        pending: dict[str, _Pending] = {}
        located: dict[int, dict[str, tuple[str, str, int]]] = {}
        for unit, stat in placed:
            mapping = located[id(stat)] = {}
            for name, column in stat.columns.items():
                part = stat.column_units.get(name, unit)
                values = np.asarray(column)
                if values.shape != (part.size,):
                    raise ValueError(f"column {name!r} must have one value per record of its unit")
                block = pending.get(part.key)
                if block is None:
                    block = pending[part.key] = _Pending(part.indices)
                elif block.indices is not part.indices and not np.array_equal(
                    block.indices, part.indices
                ):
                    raise ValueError(f"unit {part.key!r} is named with two sets of records")
                if name in stat.column_segments:
                    segment, size = stat.column_segments[name]
                    start = block.segment_start
                    block.segmented.append((values, segment, size))
                    block.segment_start += size
                    for k in range(size):
                        mapping[f"{name}{k}"] = (part.key, "segment", start + k)
                else:
                    mapping[name] = (part.key, *block.add(values, n))
        self.blocks = {
            key: _Block(n, block.indices, block.integer, block.real, block.segmented)
            for key, block in pending.items()
        }
        self.located = located
        self.largest = max((block.size for block in self.blocks.values()), default=0)

    def totals(self, counts: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {key: block.totals(counts) for key, block in self.blocks.items()}

    def columns(
        self, stat: Statistic, totals: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The statistic's column totals per resample, by its column names."""
        kinds = {"int": 0, "real": 1, "segment": 2}
        return {
            name: totals[key][kinds[kind]][:, position]
            for name, (key, kind, position) in self.located[id(stat)].items()
        }


class _Pending:
    """A block's columns while the store is being built: equal columns are kept once."""

    def __init__(self, indices: np.ndarray):
        self.indices = indices
        self.integer: list[np.ndarray] = []
        self.real: list[np.ndarray] = []
        self.segmented: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.segment_start = 0
        self.seen: dict[tuple[str, bytes], int] = {}

    def add(self, values: np.ndarray, n: int) -> tuple[str, int]:
        """Store a plain column (or find its equal): (kind, position)."""
        as_float = np.ascontiguousarray(values, dtype=np.float64)
        exact = values.size == 0 or bool(
            np.all(as_float == np.round(as_float)) and np.abs(as_float).max() * n < _EXACT_FLOAT32
        )
        kind, target = ("int", self.integer) if exact else ("real", self.real)
        digest = (kind, hashlib.blake2b(as_float.data.cast("B")).digest())
        position = self.seen.get(digest)
        if position is None or not np.array_equal(target[position], as_float):
            # integers keep their own (often one-byte) type until the block stores them
            target.append(values if exact and values.dtype.kind in "biu" else as_float)
            position = self.seen[digest] = len(target) - 1
        return kind, position


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
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n * resamples >= PARALLEL_ELEMENTS else 1
    chunk = chunk_resamples(resampler.bytes_per_resample(), resamples, workers=workers)
    starts = list(range(0, resamples, chunk))
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
        self.store = _Store(n, self.additive)

    def bytes_per_resample(self) -> int:
        """A resample's share of a chunk: its row of counts, the bincount it is made from, and
        the largest working set beside them (a panel of the stored columns' float copies, or
        a weighted statistic's arrays)."""
        # a panel's uint8 gather, float32 and float64 copies and a float64 product
        panel = 21 * min(PANEL_RECORDS, self.store.largest)
        weighted = max((stat.chunk_bytes() for stat in self.weighted), default=0)
        return self.n + max(panel, weighted)

    def chunk(self, start: int, stop: int) -> int:
        counts = resample_counts(self.seed, self.n, start, stop)
        if self.additive:
            totals = self.store.totals(counts)
            for _, stat in self.additive:
                columns = self.store.columns(stat, totals)
                _fill(
                    self.results[id(stat)],
                    stat,
                    start,
                    stop,
                    lambda s=stat, t=columns: s.combine(t),
                )
                if stat.component_replicates is not None:
                    _fill(
                        stat.component_replicates,
                        stat,
                        start,
                        stop,
                        lambda s=stat, t=columns: s.components(t),
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
