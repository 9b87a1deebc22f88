"""semantic_similarity: a model shipped inside a package, or null with a reason without it."""

import socket

import numpy as np
import pytest

from lifecycle.metrics import semantic

from .helpers import jsonl, run_file

PAIRS = [
    ("The patient has a fever.", "The patient is febrile."),
    ("Take the tablet with food.", "The scan showed a fracture."),
]


def test_without_the_extra_it_is_null_with_a_reason(monkeypatch):
    monkeypatch.setattr(semantic, "available", lambda: False)
    result = run_file(
        jsonl([{"reference": r, "output": o} for r, o in PAIRS]), metrics=["semantic_similarity"]
    )
    entry = result["metrics"]["semantic_similarity"]
    assert entry["value"] is None
    assert 'install the "semantic" extra' in entry["reason"]


@pytest.mark.skipif(not semantic.available(), reason="the semantic extra is not installed")
def test_it_embeds_with_the_packaged_model_offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    result = run_file(
        jsonl([{"reference": r, "output": o} for r, o in PAIRS]),
        metrics=["semantic_similarity"],
        resamples=20,
    )
    model = semantic._model()
    left = model.encode([r for r, _ in PAIRS], normalize_embeddings=True)
    right = model.encode([o for _, o in PAIRS], normalize_embeddings=True)
    expected = float(np.mean(np.sum(left * right, axis=1)))
    entry = result["metrics"]["semantic_similarity"]
    assert entry["value"] == pytest.approx(expected, abs=1e-6)
    assert -1 <= entry["ci_low"] <= entry["ci_high"] <= 1
    assert semantic.PACKAGE in result["provenance"]["libraries"]
