"""Every metric against its named reference, on random data (PRODUCT.md "Metric conventions")."""

import math
import os
import re
import string
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import jsonl, run_file, value

# METRICS_HYPOTHESIS_EXAMPLES=300 runs a deeper search locally; CI keeps the suite fast.
FAST = settings(
    max_examples=int(os.environ.get("METRICS_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def close(actual, expected, rel=1e-12):
    assert actual == pytest.approx(expected, rel=rel, abs=1e-12)


@st.composite
def binary_records(draw, min_size=2, max_size=60):
    n = draw(st.integers(min_size, max_size))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    predictions = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    grid = draw(st.booleans())  # coarse scores make ties
    scores = draw(
        st.lists(
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
            if grid
            else st.floats(0, 1, allow_nan=False),
            min_size=n,
            max_size=n,
        )
    )
    groups = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    return [
        {"id": f"r{i}", "label": y, "prediction": p, "score": s, "groups": {"g": g}}
        for i, (y, p, s, g) in enumerate(zip(labels, predictions, scores, groups, strict=True))
    ]


def _columns(records):
    y = np.array([r["label"] for r in records])
    p = np.array([r["prediction"] for r in records])
    s = np.array([r["score"] for r in records], dtype=float)
    g = np.array([r["groups"]["g"] for r in records])
    return y, p, s, g


BINARY_KEYS = [
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
    "demographic_parity_difference",
    "equalized_odds_difference",
]


def ece_by_definition(y, s):
    bins = np.minimum(np.floor(s * 10).astype(int), 9)
    total = 0.0
    for b in range(10):
        mask = bins == b
        if mask.any():
            total += mask.sum() / y.size * abs(y[mask].mean() - s[mask].mean())
    return total


@FAST
@given(binary_records())
def test_it_matches_scikit_learn_and_fairlearn_on_binary_labels(records):
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
    from sklearn import metrics as skm

    result = run_file(jsonl(records), metrics=BINARY_KEYS)
    y, p, s, g = _columns(records)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        close(value(result, "accuracy"), skm.accuracy_score(y, p))
        for key, function in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            expected = function(y, p, zero_division=np.nan)
            if np.isnan(expected):
                assert value(result, key) is None
                assert result["metrics"][key]["reason"]
            else:
                assert value(result, key) == expected  # the same ratio of integers

        labels = sorted(set(y) | set(p))
        assert (
            value(result, "confusion_matrix") == skm.confusion_matrix(y, p, labels=labels).tolist()
        )
        assert result["metrics"]["confusion_matrix"]["labels"] == labels

        kappa = skm.cohen_kappa_score(y, p, weights="quadratic")
        if np.isnan(kappa):
            assert value(result, "weighted_kappa") is None
        else:
            close(value(result, "weighted_kappa"), kappa)

        tn, fp, fn, tp = skm.confusion_matrix(y, p, labels=[0, 1]).ravel()
        sens = tp / (tp + fn) if tp + fn else math.nan
        spec = tn / (tn + fp) if tn + fp else math.nan
        for key, expected in (
            ("specificity", spec),
            ("lr_positive", sens / (1 - spec) if spec != 1 else math.nan),
            ("lr_negative", (1 - sens) / spec if spec != 0 else math.nan),
        ):
            if math.isnan(expected):
                assert value(result, key) is None and result["metrics"][key]["reason"]
            else:
                close(value(result, key), expected)

        if len(set(y)) == 2:
            close(value(result, "auroc"), skm.roc_auc_score(y, s))
            close(value(result, "brier_score"), skm.brier_score_loss(y, s), rel=1e-9)
        else:
            assert value(result, "auroc") is None
            assert "one class" in result["metrics"]["auroc"]["reason"]
        close(value(result, "ece"), ece_by_definition(y, s), rel=1e-9)

        fairness = result["fairness"]["g"]
        assert fairness["demographic_parity_difference"]["value"] == (
            demographic_parity_difference(y, p, sensitive_features=g)
        )
        assert fairness["equalized_odds_difference"]["value"] == (
            equalized_odds_difference(y, p, sensitive_features=g)
        )

        for group in sorted(set(g)):
            mask = g == group
            entries = result["groups"]["g"][group]
            close(entries["accuracy"]["value"], skm.accuracy_score(y[mask], p[mask]))
            if len(set(y[mask])) == 2:
                close(entries["auroc"]["value"], skm.roc_auc_score(y[mask], s[mask]))
            assert entries["accuracy"]["n"] == int(mask.sum())


@st.composite
def multiclass_records(draw):
    n = draw(st.integers(2, 50))
    classes = draw(
        st.sampled_from([[0, 1, 2], [1, 2, 3, 4], ["mild", "moderate", "severe"], ["A", "B"]])
    )
    labels = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    predictions = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    if classes == [0, 1, 2] and set(labels) | set(predictions) <= {0, 1}:
        labels[0] = 2  # keep it multiclass
    return [{"label": y, "prediction": p} for y, p in zip(labels, predictions, strict=True)]


@FAST
@given(multiclass_records())
def test_it_uses_macro_averaging_for_other_labels(records):
    from sklearn import metrics as skm

    keys = ["accuracy", "precision", "recall", "f1", "weighted_kappa", "confusion_matrix"]
    result = run_file(jsonl(records), metrics=keys)
    y = [r["label"] for r in records]
    p = [r["prediction"] for r in records]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        close(value(result, "accuracy"), skm.accuracy_score(y, p))
        close(value(result, "precision"), skm.precision_score(y, p, average="macro"))
        close(value(result, "recall"), skm.recall_score(y, p, average="macro"))
        close(value(result, "f1"), skm.f1_score(y, p, average="macro"))
        kappa = skm.cohen_kappa_score(y, p, weights="quadratic")
        if np.isnan(kappa):
            assert value(result, "weighted_kappa") is None
        else:
            close(value(result, "weighted_kappa"), kappa)
        labels = sorted(set(y) | set(p))
        assert (
            value(result, "confusion_matrix") == skm.confusion_matrix(y, p, labels=labels).tolist()
        )
    assert "specificity" not in result["metrics"]


def test_it_reports_binary_only_metrics_as_null_for_multiclass_labels():
    records = [{"label": c, "prediction": c, "score": 0.5} for c in (0, 1, 2, 1)]
    result = run_file(jsonl(records), metrics=["specificity", "auroc", "ece"])
    for key in ("specificity", "auroc", "ece"):
        assert value(result, key) is None
        assert "binary" in result["metrics"][key]["reason"]


@FAST
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=40))
def test_it_counts_triage_by_urgency_level(pairs):
    records = [{"label": y, "prediction": p} for y, p in pairs]
    result = run_file(
        jsonl(records), metrics=["triage_accuracy", "under_triage_rate", "over_triage_rate"]
    )
    n = len(pairs)
    close(value(result, "triage_accuracy"), sum(p == y for y, p in pairs) / n)
    close(value(result, "under_triage_rate"), sum(p > y for y, p in pairs) / n)
    close(value(result, "over_triage_rate"), sum(p < y for y, p in pairs) / n)


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1.0, 2.0, 3.0, 4.5, 6.0]),
            st.integers(0, 1),
            st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9]),
        ),
        min_size=2,
        max_size=40,
    )
)
def test_it_matches_lifelines_concordance(rows):
    from lifelines.utils import concordance_index

    records = [{"time": t, "event": e, "risk": r} for t, e, r in rows]
    result = run_file(jsonl(records), metrics=["c_index"])
    times, events, risks = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    try:
        expected = concordance_index(times, -risks, events)
    except ZeroDivisionError:
        assert value(result, "c_index") is None
        return
    close(value(result, "c_index"), expected)


WORDS = [
    "the",
    "patient",
    "has",
    "a",
    "fever",
    "and",
    "cough",
    "no",
    "pain",
    "Blood",
    "pressure",
    "is",
    "stable.",
    "An",
    "x-ray",
    "showed",
    "pneumonia,",
    "given",
    "antibiotics",
    "today",
]
sentences = st.lists(st.sampled_from(WORDS), min_size=0, max_size=14).map(" ".join)


@st.composite
def text_records(draw):
    n = draw(st.integers(1, 12))
    pairs = draw(st.lists(st.tuples(sentences, sentences, sentences), min_size=n, max_size=n))
    return [{"reference": r, "output": o, "input": i} for r, o, i in pairs]


def squad_reference(text):
    """The official SQuAD evaluation script's normalize_answer, verbatim in spirit."""

    def remove_articles(t):
        return re.sub(r"\b(a|an|the)\b", " ", t)

    def white_space_fix(t):
        return " ".join(t.split())

    def remove_punc(t):
        exclude = set(string.punctuation)
        return "".join(ch for ch in t if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(text.lower())))


def squad_f1_reference(gold, pred):
    gold_toks, pred_toks = squad_reference(gold).split(), squad_reference(pred).split()
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


TEXT_KEYS = [
    "rouge1",
    "rouge2",
    "rougeL",
    "bleu",
    "gleu",
    "exact_match",
    "token_f1",
    "wer",
    "compression_ratio",
    "redundancy_rate",
]


@FAST
@given(text_records())
def test_it_matches_the_text_references(records):
    import jiwer
    import sacrebleu
    from nltk.translate.gleu_score import corpus_gleu
    from rouge_score.rouge_scorer import RougeScorer

    result = run_file(jsonl(records), metrics=TEXT_KEYS)
    refs = [r["reference"] for r in records]
    outs = [r["output"] for r in records]

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, o) for r, o in zip(refs, outs, strict=True)]
    for key in ("rouge1", "rouge2", "rougeL"):
        close(value(result, key), float(np.mean([s[key].fmeasure for s in scores])))

    close(value(result, "bleu"), sacrebleu.corpus_bleu(outs, [refs]).score)

    expected_gleu = corpus_gleu([[r.split()] for r in refs], [o.split() for o in outs])
    if all(not r.split() and not o.split() for r, o in zip(refs, outs, strict=True)):
        assert value(result, "gleu") is None  # nltk says 0.0 for "no n-grams at all"
    else:
        close(value(result, "gleu"), expected_gleu)

    close(
        value(result, "exact_match"),
        np.mean(
            [squad_reference(r) == squad_reference(o) for r, o in zip(refs, outs, strict=True)]
        ),
    )
    close(
        value(result, "token_f1"),
        np.mean([squad_f1_reference(r, o) for r, o in zip(refs, outs, strict=True)]),
    )

    usable = [(r, o) for r, o in zip(refs, outs, strict=True) if r.strip()]
    if usable:
        close(value(result, "wer"), jiwer.wer([r for r, _ in usable], [o for _, o in usable]))
    else:
        assert value(result, "wer") is None

    ratios = [
        len(r["input"].split()) / len(o.split())
        for r, o in zip(records, outs, strict=True)
        if o.split()
    ]
    if ratios:
        close(value(result, "compression_ratio"), np.mean(ratios))
    else:
        assert value(result, "compression_ratio") is None

    rates = []
    for o in outs:
        words = re.findall(r"\w+", o.lower())
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        if trigrams:
            rates.append(1 - len(set(trigrams)) / len(trigrams))
    if rates:
        close(value(result, "redundancy_rate"), np.mean(rates))
    else:
        assert value(result, "redundancy_rate") is None
        assert "trigram" in result["metrics"]["redundancy_rate"]["reason"]


def test_it_reports_no_trigrams_as_null_with_a_reason():
    result = run_file(
        jsonl([{"output": "Too short."}, {"output": ""}]), metrics=["redundancy_rate"]
    )
    entry = result["metrics"]["redundancy_rate"]
    assert entry["value"] is None
    assert entry["reason"] == "no output has a word trigram"


@FAST
@given(st.lists(st.lists(st.floats(-20, 0, allow_nan=False), max_size=8), min_size=1, max_size=10))
def test_it_computes_perplexity_over_all_tokens(logprobs):
    result = run_file(jsonl([{"token_logprobs": lp} for lp in logprobs]), metrics=["perplexity"])
    flat = [x for lp in logprobs for x in lp]
    if not flat:
        assert value(result, "perplexity") is None
        return
    close(value(result, "perplexity"), math.exp(-sum(flat) / len(flat)), rel=1e-9)


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=30
    )
)
def test_it_counts_attacks_among_correct_predictions(rows):
    records = [{"label": y, "prediction": p, "perturbed_prediction": q} for y, p, q in rows]
    result = run_file(jsonl(records), metrics=["attack_success_rate"])
    correct = [(y, p, q) for y, p, q in rows if y == p]
    if not correct:
        assert value(result, "attack_success_rate") is None
        return
    close(value(result, "attack_success_rate"), sum(q != y for y, _, q in correct) / len(correct))


def test_it_scores_consistency_over_repeated_prompts():
    records = [
        {"prompt_id": "p1", "output": "The fever."},
        {"prompt_id": "p1", "output": "fever"},  # equal after SQuAD normalisation
        {"prompt_id": "p2", "output": "yes"},
        {"prompt_id": "p2", "output": "no"},
        {"prompt_id": "p3", "output": "single"},  # one record: not counted
    ]
    result = run_file(jsonl(records), metrics=["consistency"])
    assert value(result, "consistency") == 0.5
    assert result["metrics"]["consistency"]["n"] == 2
    by_prediction = [{"prompt_id": "a", "prediction": 1}, {"prompt_id": "a", "prediction": 1}]
    assert value(run_file(jsonl(by_prediction), metrics=["consistency"]), "consistency") == 1.0
    lonely = run_file(jsonl([{"prompt_id": "a", "output": "x"}]), metrics=["consistency"])
    assert value(lonely, "consistency") is None


def test_it_compares_codes_after_normalising_them():
    records = [
        {"label": "E11.9", "prediction": "e119"},  # same code
        {"label": "E11.9", "prediction": "E11.65"},  # same category
        {"label": ["I10", "E11.9"], "prediction": ["e11.9", "I10"]},  # same set
        {"label": ["I10"], "prediction": ["I10", "J18.9"]},
    ]
    result = run_file(jsonl(records), metrics=["code_exact_match", "code_category_accuracy"])
    assert value(result, "code_exact_match") == 0.5
    assert value(result, "code_category_accuracy") == 0.75


def test_it_matches_entity_spans_exactly_and_micro_averages():
    records = [
        {"label": [[0, 5, "SYMPTOM"], [10, 14, "DRUG"]], "prediction": [[0, 5, "SYMPTOM"]]},
        {"label": [[3, 8, "DRUG"]], "prediction": [[3, 8, "SYMPTOM"], [20, 25, "DRUG"]]},
        {"label": [], "prediction": []},
    ]
    result = run_file(jsonl(records), metrics=["entity_precision", "entity_recall", "entity_f1"])
    assert value(result, "entity_precision") == 1 / 3
    assert value(result, "entity_recall") == 1 / 3
    assert value(result, "entity_f1") == 2 * 1 / (3 + 3)


@FAST
@given(st.lists(st.floats(0, 10_000, allow_nan=False), min_size=1, max_size=50))
def test_it_takes_latency_percentiles_like_numpy(latencies):
    result = run_file(
        jsonl([{"latency_ms": x} for x in latencies]), metrics=["latency_p50_ms", "latency_p95_ms"]
    )
    assert value(result, "latency_p50_ms") == float(np.percentile(latencies, 50))
    assert value(result, "latency_p95_ms") == float(np.percentile(latencies, 95))


def test_it_averages_flags_and_ratings():
    records = [
        {"hallucinated": True, "completed": 1, "empathy": 4, "trust": 3.5},
        {"hallucinated": False, "completed": 0, "empathy": 2, "trust": 5},
        {"hallucinated": False, "completed": True, "empathy": 3, "trust": 4},
    ]
    keys = ["hallucination_rate", "task_completion_rate", "empathy_score", "trust_score"]
    result = run_file(jsonl(records), metrics=keys)
    assert value(result, "hallucination_rate") == 1 / 3
    assert value(result, "task_completion_rate") == 2 / 3
    assert value(result, "empathy_score") == 3.0
    assert value(result, "trust_score") == pytest.approx(12.5 / 3)
