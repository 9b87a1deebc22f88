"""The vectorised bootstrap equals the slow loop that calls the reference library once per
resample, on the same resample indices."""

import warnings

import numpy as np
import pytest

from lifecycle.metrics import bootstrap
from lifecycle.metrics.bootstrap import (
    cluster_counts,
    percentile_interval,
    resample_counts,
    resample_indices,
)

from .helpers import engine_replicates, slow_replicates

RESAMPLES = 40


def binary_data(n=120, seed=3, ties=False):
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    if ties:
        score = np.round(score, 1)
    label = (rng.random(n) < score).astype(int)
    prediction = (score > 0.5).astype(int)
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.4, 0.1])
    records = [
        {"label": int(y), "prediction": int(p), "score": float(s), "groups": {"g": str(g)}}
        for y, p, s, g in zip(label, prediction, score, group, strict=True)
    ]
    return records, label, prediction, score, group


def sk(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = function(*args, **kwargs)
    return float(result)


def test_resamples_are_fixed_by_seed_and_index_not_by_chunking():
    whole = resample_counts(7, 50, 0, 10)
    parts = np.vstack([resample_counts(7, 50, 0, 3), resample_counts(7, 50, 3, 10)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(whole[4], np.bincount(resample_indices(7, 50, 4), minlength=50))
    assert not np.array_equal(resample_counts(8, 50, 0, 10), whole)
    assert whole.sum(axis=1).tolist() == [50] * 10


@pytest.mark.parametrize(
    ("key", "reference", "exact"),
    [
        ("accuracy", lambda y, p, s: sk_metric("accuracy_score", y, p), True),
        (
            "precision",
            lambda y, p, s: sk_metric("precision_score", y, p, zero_division=np.nan),
            True,
        ),
        ("recall", lambda y, p, s: sk_metric("recall_score", y, p, zero_division=np.nan), True),
        ("f1", lambda y, p, s: sk_metric("f1_score", y, p, zero_division=np.nan), True),
        (
            "specificity",
            lambda y, p, s: sk_metric("recall_score", y, p, pos_label=0, zero_division=np.nan),
            True,
        ),
        ("auroc", lambda y, p, s: sk_metric("roc_auc_score", y, s), False),
        ("brier_score", lambda y, p, s: sk_metric("brier_score_loss", y, s), False),
        (
            "weighted_kappa",
            lambda y, p, s: sk_metric("cohen_kappa_score", y, p, weights="quadratic"),
            False,
        ),
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_binary_replicates_equal_scikit_learn_per_resample(key, reference, exact, ties):
    records, y, p, s, _ = binary_data(ties=ties)
    _, fast = engine_replicates(records, key, resamples=RESAMPLES)
    slow = slow_replicates(len(records), RESAMPLES, 0, lambda i: reference(y[i], p[i], s[i]))
    if exact:
        np.testing.assert_array_equal(fast, slow)
    else:
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def sk_metric(name, *args, **kwargs):
    from sklearn import metrics

    return sk(getattr(metrics, name), *args, **kwargs)


def test_likelihood_ratios_and_ece_equal_their_definitions_per_resample():
    records, y, p, s, _ = binary_data()

    def lr_positive(i):
        sens = sk_metric("recall_score", y[i], p[i], zero_division=np.nan)
        spec = sk_metric("recall_score", y[i], p[i], pos_label=0, zero_division=np.nan)
        return sens / (1 - spec) if spec != 1 else np.nan

    def ece(i):
        yy, ss = y[i], s[i]
        bins = np.minimum(np.floor(ss * 10).astype(int), 9)
        return sum(
            (bins == b).sum() / yy.size * abs(yy[bins == b].mean() - ss[bins == b].mean())
            for b in range(10)
            if (bins == b).any()
        )

    for key, reference in (("lr_positive", lr_positive), ("ece", ece)):
        _, fast = engine_replicates(records, key, resamples=RESAMPLES)
        slow = slow_replicates(len(records), RESAMPLES, 0, reference)
        np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)


def test_subgroup_replicates_restrict_the_same_resamples_to_the_group():
    records, y, p, s, g = binary_data(ties=True)
    for key, reference in (
        ("auroc", lambda i: sk_metric("roc_auc_score", y[i], s[i])),
        ("recall", lambda i: sk_metric("recall_score", y[i], p[i], zero_division=np.nan)),
    ):
        _, fast = engine_replicates(records, key, resamples=RESAMPLES, attribute="g", group="c")

        def in_group(i, reference=reference):
            i = i[g[i] == "c"]
            return reference(i) if i.size else np.nan

        slow = slow_replicates(len(records), RESAMPLES, 0, in_group)
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_fairness_replicates_equal_fairlearn_per_resample():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    records, y, p, _, g = binary_data(n=80)
    for key, function in (
        ("demographic_parity_difference", demographic_parity_difference),
        ("equalized_odds_difference", equalized_odds_difference),
    ):
        _, fast = engine_replicates(records, key, resamples=15, attribute="g")
        slow = slow_replicates(
            len(records), 15, 0, lambda i, f=function: sk(f, y[i], p[i], sensitive_features=g[i])
        )
        np.testing.assert_array_equal(fast, slow)


def test_multiclass_replicates_equal_scikit_learn_per_resample():
    rng = np.random.default_rng(5)
    y = rng.choice(["mild", "moderate", "severe", "critical"], 70, p=[0.4, 0.3, 0.25, 0.05])
    p = np.where(rng.random(70) < 0.7, y, rng.choice(["mild", "severe"], 70))
    records = [{"label": str(a), "prediction": str(b)} for a, b in zip(y, p, strict=True)]
    for key, reference in (
        ("f1", lambda i: sk_metric("f1_score", y[i], p[i], average="macro")),
        ("precision", lambda i: sk_metric("precision_score", y[i], p[i], average="macro")),
        (
            "weighted_kappa",
            lambda i: sk_metric("cohen_kappa_score", y[i], p[i], weights="quadratic"),
        ),
    ):
        _, fast = engine_replicates(records, key, resamples=RESAMPLES)
        slow = slow_replicates(len(records), RESAMPLES, 0, reference)
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def text_data(n=30, seed=2):
    rng = np.random.default_rng(seed)
    words = [
        "the",
        "patient",
        "has",
        "fever",
        "and",
        "cough",
        "no",
        "pain",
        "blood",
        "pressure",
        "is",
        "stable",
        "today",
    ]

    def sentence():
        return " ".join(rng.choice(words, rng.integers(0, 12)))

    return [{"reference": sentence(), "output": sentence()} for _ in range(n)]


def test_text_replicates_equal_the_libraries_per_resample():
    import jiwer
    import sacrebleu
    from nltk.translate.gleu_score import corpus_gleu
    from rouge_score.rouge_scorer import RougeScorer

    records = text_data()
    refs = np.array([r["reference"] for r in records], dtype=object)
    outs = np.array([r["output"] for r in records], dtype=object)
    scorer = RougeScorer(["rougeL"], use_stemmer=True)

    def gleu(i):
        if all(not refs[k].split() and not outs[k].split() for k in i):
            return np.nan
        return corpus_gleu([[refs[k].split()] for k in i], [outs[k].split() for k in i])

    def wer(i):
        kept = [k for k in i if refs[k].strip()]
        return jiwer.wer([refs[k] for k in kept], [outs[k] for k in kept])

    references = {
        "bleu": lambda i: sacrebleu.corpus_bleu(list(outs[i]), [list(refs[i])]).score,
        "rougeL": lambda i: np.mean([scorer.score(refs[k], outs[k])["rougeL"].fmeasure for k in i]),
        "gleu": gleu,
        "wer": wer,
    }
    for key, reference in references.items():
        _, fast = engine_replicates(records, key, resamples=25)
        slow = slow_replicates(len(records), 25, 0, reference)
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12, err_msg=key)


def test_latency_perplexity_and_c_index_replicates_equal_their_references():
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(9)
    n = 60
    latency = np.round(rng.gamma(2, 300, n), 1)
    logprobs = [list(-rng.gamma(1, 1, rng.integers(0, 6))) for _ in range(n)]
    time = rng.choice([1.0, 2.0, 3.0, 5.0, 8.0], n)
    event = rng.integers(0, 2, n)
    risk = np.round(rng.random(n), 1)
    records = [
        {
            "latency_ms": float(latency[i]),
            "token_logprobs": logprobs[i],
            "time": float(time[i]),
            "event": int(event[i]),
            "risk": float(risk[i]),
        }
        for i in range(n)
    ]

    def perplexity(i):
        flat = [x for k in i for x in logprobs[k]]
        return np.exp(-np.sum(flat) / len(flat)) if flat else np.nan

    references = {
        "latency_p95_ms": lambda i: float(np.percentile(latency[i], 95)),
        "latency_p50_ms": lambda i: float(np.percentile(latency[i], 50)),
        "perplexity": perplexity,
        "c_index": lambda i: concordance_index(time[i], -risk[i], event[i]),
    }
    for key, reference in references.items():
        _, fast = engine_replicates(records, key, resamples=RESAMPLES)
        slow = slow_replicates(n, RESAMPLES, 0, reference)
        rtol = 1e-9 if key == "perplexity" else 1e-12
        np.testing.assert_allclose(fast, slow, rtol=rtol, atol=1e-12, err_msg=key)


def test_consistency_resamples_prompts():
    records = []
    agree = [1, 0, 1, 1, 0, 1]
    for k, agrees in enumerate(agree):
        records.append({"prompt_id": f"p{k}", "output": "yes"})
        records.append({"prompt_id": f"p{k}", "output": "yes" if agrees else "no"})
    _, fast = engine_replicates(records, "consistency", resamples=RESAMPLES)
    counts = cluster_counts(0, len(agree), 0, RESAMPLES)
    np.testing.assert_allclose(fast, counts @ np.array(agree) / len(agree))


def test_chunks_and_threads_do_not_change_the_replicates(monkeypatch):
    records, *_ = binary_data(n=90)
    _, reference = engine_replicates(records, "auroc", resamples=RESAMPLES)
    monkeypatch.setattr(bootstrap, "MAX_CHUNK_RESAMPLES", 7)  # chunks of 7 resamples
    monkeypatch.setattr(bootstrap, "PARALLEL_ELEMENTS", 1)  # and two threads
    _, chunked = engine_replicates(records, "auroc", resamples=RESAMPLES)
    np.testing.assert_array_equal(reference, chunked)


def test_the_interval_is_the_central_95_percent_of_defined_replicates():
    replicates = np.r_[np.arange(100, dtype=float), np.nan, np.nan]
    low, high, undefined = percentile_interval(replicates)
    assert (low, high) == tuple(np.percentile(np.arange(100), [2.5, 97.5]))
    assert undefined == 2
    assert percentile_interval(np.array([np.nan])) == (None, None, 1)
