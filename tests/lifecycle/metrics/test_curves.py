"""The curves behind auroc and ece that the run page draws."""

import io
import json

import numpy as np
from sklearn.metrics import auc, roc_auc_score

from lifecycle.metrics import evaluate


def records(n=300, seed=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    lines = [
        json.dumps({"id": str(i), "label": int(y[i]), "score": float(score[i])}) for i in range(n)
    ]
    return io.BytesIO(("\n".join(lines) + "\n").encode()), y, score


def test_the_roc_curve_is_sklearns_and_integrates_to_the_auroc():
    stream, y, score = records()
    result = evaluate(stream, filename="r.jsonl", metrics=["auroc", "ece"], resamples=10)
    curve = result["metrics"]["auroc"]["curve"]
    assert (curve["fpr"][0], curve["tpr"][0], curve["fpr"][-1], curve["tpr"][-1]) == (0, 0, 1, 1)
    assert len(curve["fpr"]) <= 101
    assert abs(auc(curve["fpr"], curve["tpr"]) - roc_auc_score(y, score)) < 0.01


def test_the_reliability_bins_cover_every_record():
    stream, y, _ = records()
    bins = evaluate(stream, filename="r.jsonl", metrics=["ece"], resamples=10)["metrics"]["ece"][
        "bins"
    ]
    assert len(bins) == 10 and sum(b["n"] for b in bins) == len(y)
    for b in bins:
        if b["n"]:
            assert b["lower"] <= b["mean_score"] <= b["upper"]
            assert 0 <= b["fraction_positive"] <= 1
