"""What metric builders share: the validated records, per-record results computed once for the
whole file (ROUGE scores, BLEU statistics, class codes...), and the run's settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .bootstrap import Statistic, Unit
from .records import Dataset, Limits

T = TypeVar("T")

# Records between progress reports inside a per-record stage: ROUGE scores about a thousand
# records a second, so a report every few hundred keeps a job's heartbeat fresh through a stage
# of minutes; the caller's callback decides how often to pass one on (time-based).
BEAT_EVERY = 200


@dataclass
class MatrixValue:
    """A metric whose value is a matrix (the confusion matrix): no interval."""

    value: list[list[int]] | None
    labels: list[Any]
    n: int
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)


Result = Statistic | MatrixValue
Builder = Callable[["Context", str, Unit], Result]


class Context:
    """The dataset plus lazily computed per-record arrays, each computed once per run."""

    def __init__(
        self,
        dataset: Dataset,
        limits: Limits,
        seed: int,
        metrics: list[str],
        progress: Callable[[str], None] | None = None,
    ):
        self.dataset = dataset
        self.limits = limits
        self.seed = seed
        self.metrics = metrics
        self.normalisation: dict[str, Any] = {}
        self.libraries: set[str] = set()
        self._cache: dict[str, Any] = {}
        self._progress = progress
        # What the progress callback raised to stop the run (a reclaimed job, a time limit):
        # the engine re-raises it instead of reporting it as a metric that could not be computed.
        self.interrupted: BaseException | None = None

    def beat(self, message: str) -> None:
        """Report that a long stage is still working (the callback may stop the run by
        raising)."""
        if self._progress is None:
            return
        try:
            self._progress(message)
        except BaseException as error:
            self.interrupted = error
            raise

    def each(self, items: Iterable[T], stage: str) -> Iterator[T]:
        """`items` (one per record), with a progress report every BEAT_EVERY of them."""
        for done, item in enumerate(items):
            if done and done % BEAT_EVERY == 0:
                self.beat(f"{stage}: {done:,} of {self.n:,} records")
            yield item

    def batches(self, count: int, stage: str) -> Iterator[slice]:
        """Slices of BEAT_EVERY over `count` records, with a progress report before each but
        the first: for a library call that takes a whole list and cannot report by itself."""
        for start in range(0, count, BEAT_EVERY):
            if start:
                self.beat(f"{stage}: {start:,} of {count:,} records")
            yield slice(start, start + BEAT_EVERY)

    @property
    def n(self) -> int:
        return self.dataset.n

    def once(self, key: str, compute: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def floats(self, name: str) -> np.ndarray:
        """A numeric field as float64, NaN where a record lacks it."""
        return self.once(
            f"floats:{name}",
            lambda: np.array(
                [np.nan if v is None else float(v) for v in self.dataset.column(name)],
                dtype=np.float64,
            ),
        )

    def texts(self, name: str) -> list[str]:
        return self.once(
            f"texts:{name}", lambda: ["" if v is None else v for v in self.dataset.column(name)]
        )
