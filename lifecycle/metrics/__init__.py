"""The evaluation metric engine: plain Python and numpy, no Django.

    from lifecycle.metrics import evaluate, Limits, RecordError
    with open("records.jsonl", "rb") as stream:
        result = evaluate(stream, filename="records.jsonl", task="clinical_text_classification")

See docs/metrics.md for the record format, every metric key and its reference, the presets,
the bootstrap and the subgroup and fairness rules.
"""

from .engine import ENGINE_VERSION, evaluate
from .records import Dataset, Limits, RecordError, parse_records
from .registry import (
    DEFAULT_RESAMPLES,
    FAIRNESS_METRICS,
    MAX_RESAMPLES,
    METRICS,
    TASK_PRESETS,
    MetricSpec,
)
from .report import format_text

__all__ = [
    "DEFAULT_RESAMPLES",
    "ENGINE_VERSION",
    "FAIRNESS_METRICS",
    "MAX_RESAMPLES",
    "METRICS",
    "TASK_PRESETS",
    "Dataset",
    "Limits",
    "MetricSpec",
    "RecordError",
    "evaluate",
    "format_text",
    "parse_records",
]
