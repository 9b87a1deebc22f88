"""What metric builders share: the validated records, per-record results computed once for the
whole file (ROUGE scores, BLEU statistics, class codes...), and the run's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .bootstrap import Statistic, Unit
from .records import Dataset, Limits

T = TypeVar("T")


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

    def __init__(self, dataset: Dataset, limits: Limits, seed: int, metrics: list[str]):
        self.dataset = dataset
        self.limits = limits
        self.seed = seed
        self.metrics = metrics
        self.normalisation: dict[str, Any] = {}
        self.libraries: set[str] = set()
        self._cache: dict[str, Any] = {}

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
