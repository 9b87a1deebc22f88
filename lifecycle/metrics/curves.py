"""Curves behind two scalar metrics, for charts: the ROC curve behind `auroc` and the
reliability diagram behind `ece` (the same 10 equal-width bins as ECE)."""

import numpy as np

from .classification import ECE_BINS


def roc_points(y: np.ndarray, score: np.ndarray, max_points: int = 101) -> dict[str, list[float]]:
    """scikit-learn's ROC curve, thinned to at most `max_points` points (ends kept)."""
    from sklearn.metrics import roc_curve  # loaded only when an evaluation runs

    fpr, tpr, _ = roc_curve(y, score)
    if fpr.size > max_points:
        keep = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def reliability_bins(y: np.ndarray, score: np.ndarray) -> list[dict[str, float | int | None]]:
    """Per ECE bin: its bounds, how many records, mean predicted score, observed positive rate."""
    bins = np.minimum(np.floor(score * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    out = []
    for b in range(ECE_BINS):
        inside = bins == b
        n = int(inside.sum())
        out.append(
            {
                "lower": b / ECE_BINS,
                "upper": (b + 1) / ECE_BINS,
                "n": n,
                "mean_score": round(float(score[inside].mean()), 5) if n else None,
                "fraction_positive": round(float(y[inside].mean()), 5) if n else None,
            }
        )
    return out
