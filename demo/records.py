"""Synthetic evaluation records for the demo projects: realistic shapes, fixed seeds.

Nothing here is real patient data. Each generator returns JSON Lines bytes in the record format
of PRODUCT.md (docs/metrics.md).
"""

import json
from collections.abc import Mapping, Sequence

import numpy as np

SEXES = ["F", "M"]
AGE_BANDS = ["18-39", "40-64", "65+"]
# The share of each age band among admissions, in AGE_BANDS order.
AGE_BAND_WEIGHTS = (0.3, 0.4, 0.3)

NOTE_SENTENCES = [
    "Patient reports {n} days of productive cough and low grade fever.",
    "No chest pain, no shortness of breath at rest.",
    "Lungs with scattered crackles at the right base.",
    "Started amoxicillin and advised fluids and rest.",
    "Blood pressure is well controlled on lisinopril.",
    "Follow up in {n} weeks or sooner if symptoms worsen.",
    "Discussed smoking cessation and offered nicotine replacement.",
    "Hemoglobin A1c improved to {n} point two percent.",
]


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _groups(
    rng: np.random.Generator, age_band_weights: Sequence[float] = AGE_BAND_WEIGHTS
) -> dict[str, str]:
    return {
        "sex": str(rng.choice(SEXES)),
        "age_band": str(rng.choice(AGE_BANDS, p=list(age_band_weights))),
    }


def binary_classifier(
    *,
    seed: int,
    n: int,
    prevalence: float,
    separation: float,
    group_shift: float = 0.0,
    age_band_weights: Sequence[float] = AGE_BAND_WEIGHTS,
    separation_by_age_band: Mapping[str, float] | None = None,
) -> bytes:
    """Labels, calibrated-looking scores and thresholded predictions; `group_shift` makes the
    model flag women more often, for a fairness criterion to catch. `age_band_weights` changes
    the case mix and `separation_by_age_band` how well the model separates in a band (the
    others keep `separation`): the shift a monitoring batch can show after go-live."""
    rng = np.random.default_rng(seed)
    bands = separation_by_age_band or {}
    records = []
    for i in range(n):
        groups = _groups(rng, age_band_weights)
        label = int(rng.random() < prevalence)
        spread = bands.get(groups["age_band"], separation)
        logit = rng.normal(spread if label else -spread, 1.0)
        if groups["sex"] == "F":
            logit += group_shift
        score = float(1 / (1 + np.exp(-logit)))
        records.append(
            {
                "id": f"r{i:05d}",
                "label": label,
                "score": round(score, 4),
                "prediction": int(score >= 0.5),
                "hallucinated": bool(rng.random() < 0.01),
                "groups": groups,
            }
        )
    return _jsonl(records)


def documentation_drafts(*, seed: int, n: int, error_rate: float) -> bytes:
    """Reference notes and model drafts that differ by a few word edits, with latency and
    hallucination flags."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        sentences = rng.choice(NOTE_SENTENCES, size=4, replace=False)
        reference = " ".join(s.format(n=int(rng.integers(2, 9))) for s in sentences)
        words = reference.split()
        output_words = [
            w for w in words if rng.random() >= error_rate
        ]  # dropped words are the model's errors
        output = " ".join(output_words)
        records.append(
            {
                "id": f"v{i:05d}",
                "input": reference + " " + reference,  # the conversation is longer than the note
                "reference": reference,
                "output": output,
                "latency_ms": round(float(rng.lognormal(7.2, 0.35)), 1),
                "hallucinated": bool(rng.random() < 0.015),
                "groups": _groups(rng),
            }
        )
    return _jsonl(records)


# The week of monitoring from which the sepsis model's 65+ cohort shifts (the demo's story:
# "performance differing across cohorts after go-live").
SHIFT_WEEK = 9


def sepsis_monitoring_week(week: int, *, n: int = 400) -> bytes:
    """Week `week` (1, 2, …) of the sepsis summariser's monitoring records. Until SHIFT_WEEK
    the wards look like the validation set; from then on more admissions are 65 or older, and
    in that band the model separates cases from non-cases far worse (a new documentation
    template on the elderly-care wards, say). Every other band stays as validated."""
    shifted = week >= SHIFT_WEEK
    return binary_classifier(
        seed=3100 + week,
        n=n,
        prevalence=0.12,
        separation=1.7,
        age_band_weights=(0.2, 0.3, 0.5) if shifted else AGE_BAND_WEIGHTS,
        separation_by_age_band={"65+": 0.3} if shifted else None,
    )


def scribe_monitoring_week(week: int, *, n: int = 120) -> bytes:
    """Week `week` of the ambient scribe's monitoring records: drafts like the validation
    set's, every week (the quiet project)."""
    return documentation_drafts(seed=1100 + week, n=n, error_rate=0.06)
