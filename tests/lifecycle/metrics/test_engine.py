"""evaluate(): the PRODUCT.md result shape, presets, reproducibility, subgroups and nulls."""

import io
import json

import numpy as np
import pytest

from lifecycle.metrics import (
    ENGINE_VERSION,
    FAIRNESS_METRICS,
    METRICS,
    TASK_PRESETS,
    Limits,
    evaluate,
    format_text,
)
from lifecycle.metrics import engine as engine_module

from .helpers import csv_bytes, jsonl, run_file

TASKS = {
    "clinical_knowledge_qa",
    "clinical_text_classification",
    "diagnostic_support",
    "symptom_analysis_ner",
    "treatment_planning",
    "evidence_synthesis",
    "clinical_documentation",
    "medical_coding",
    "patient_interaction",
    "health_education",
}


def classification_records(n=400, seed=1):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        score = float(rng.random())
        label = int(rng.random() < score)
        records.append(
            {
                "id": f"r{i}",
                "label": label,
                "prediction": int(score > 0.5),
                "score": round(score, 3),
                "perturbed_prediction": int(rng.random() < 0.5),
                "groups": {
                    "sex": str(rng.choice(["F", "M"])),
                    "age": str(rng.choice(["18-64", "65+"], p=[0.8, 0.2])),
                },
            }
        )
    return records


def test_presets_cover_the_ten_task_categories_with_known_metrics():
    assert set(TASK_PRESETS) == TASKS
    for task, keys in TASK_PRESETS.items():
        assert keys, task
        assert len(keys) == len(set(keys)), task
        assert set(keys) <= set(METRICS), task
    assert TASK_PRESETS["clinical_text_classification"][:6] == [
        "precision",
        "recall",
        "f1",
        "auroc",
        "ece",
        "confusion_matrix",
    ]
    assert {"demographic_parity_difference", "equalized_odds_difference"} <= set(
        TASK_PRESETS["clinical_text_classification"]
    )
    assert {
        "wer",
        "latency_p50_ms",
        "flesch_kincaid_grade",
        "hallucination_rate",
        "redundancy_rate",
    } <= set(TASK_PRESETS["clinical_documentation"])


def test_every_metric_key_of_product_md_is_supported():
    product_keys = {
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
        "triage_accuracy",
        "under_triage_rate",
        "over_triage_rate",
        "c_index",
        "rouge1",
        "rouge2",
        "rougeL",
        "bleu",
        "gleu",
        "exact_match",
        "token_f1",
        "wer",
        "flesch_kincaid_grade",
        "flesch_reading_ease",
        "compression_ratio",
        "redundancy_rate",
        "perplexity",
        "attack_success_rate",
        "consistency",
        "code_exact_match",
        "code_category_accuracy",
        "entity_precision",
        "entity_recall",
        "entity_f1",
        "hallucination_rate",
        "task_completion_rate",
        "empathy_score",
        "trust_score",
        "latency_p50_ms",
        "latency_p95_ms",
        "demographic_parity_difference",
        "equalized_odds_difference",
        "semantic_similarity",
    }
    assert set(METRICS) == product_keys
    assert set(engine_module.BUILDERS) | set(FAIRNESS_METRICS) == product_keys


def test_it_returns_the_product_md_shape():
    progress = []
    result = evaluate(
        io.BytesIO(jsonl(classification_records())),
        filename="records.jsonl",
        task="clinical_text_classification",
        resamples=200,
        seed=11,
        progress=lambda fraction, message: progress.append((fraction, message)),
    )
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN, no numpy types
    assert list(result) == ["n_records", "metrics", "groups", "fairness", "warnings", "provenance"]
    assert result["n_records"] == 400
    f1 = result["metrics"]["f1"]
    assert set(f1) == {"value", "ci_low", "ci_high", "n"}
    assert type(f1["value"]) is float and type(f1["n"]) is int
    assert f1["ci_low"] <= f1["value"] <= f1["ci_high"]
    matrix = result["metrics"]["confusion_matrix"]
    assert matrix["labels"] == [0, 1] and matrix["ci_low"] is None
    assert sum(map(sum, matrix["value"])) == 400
    assert set(result["groups"]) == {"age", "sex"}
    assert set(result["groups"]["sex"]) == {"F", "M"}
    female = result["groups"]["sex"]["F"]["f1"]
    assert female["n"] == sum(r["groups"]["sex"] == "F" for r in classification_records())
    parity = result["fairness"]["sex"]["demographic_parity_difference"]
    assert parity["ci_low"] <= parity["value"] <= parity["ci_high"]
    assert set(result["fairness"]["age"]) == {
        "demographic_parity_difference",
        "equalized_odds_difference",
    }
    assert "demographic_parity_difference" not in result["metrics"]

    provenance = result["provenance"]
    assert provenance["engine_version"] == ENGINE_VERSION
    assert provenance["seed"] == 11 and provenance["resamples"] == 200
    assert provenance["ci_method"] == (
        "percentile bootstrap; fairness differences: simultaneous bootstrap bounds on the "
        "pairwise group differences (max-t)"
    )
    assert provenance["intervals"]["f1"] == "percentile bootstrap"
    assert provenance["intervals"]["demographic_parity_difference"] == (
        "simultaneous bootstrap bounds on the pairwise group differences (max-t)"
    )
    assert "confusion_matrix" not in provenance["intervals"]
    assert provenance["confidence"] == 0.95
    assert provenance["input_format"] == "jsonl" and len(provenance["input_sha256"]) == 64
    assert provenance["task"] == "clinical_text_classification"
    assert provenance["metrics"] == TASK_PRESETS["clinical_text_classification"]
    assert {"scikit-learn", "numpy", "rouge-score", "textstat"} <= set(provenance["libraries"])
    assert "ece" in provenance["normalisation"]

    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in fractions) and 3 <= len(progress) <= 12


def test_the_same_file_and_seed_give_identical_json():
    data = jsonl(classification_records(200))
    first = run_file(data, task="clinical_text_classification", resamples=100, seed=5)
    second = run_file(data, task="clinical_text_classification", resamples=100, seed=5)
    assert json.dumps(first) == json.dumps(second)
    other = run_file(data, task="clinical_text_classification", resamples=100, seed=6)
    assert other["metrics"]["f1"]["value"] == first["metrics"]["f1"]["value"]
    assert other["metrics"]["f1"]["ci_low"] != first["metrics"]["f1"]["ci_low"]


def test_an_interval_does_not_depend_on_the_other_metrics_requested():
    records = [
        {
            "reference": f"fever {'and cough ' * (i % 4)}",
            "output": f"fever {'cough ' * (i % 3)}",
            "hallucinated": i % 5 == 0,
            "label": i % 2,
            "prediction": (i // 2) % 2,
        }
        for i in range(60)
    ]
    data = jsonl(records)
    together = run_file(
        data,
        metrics=["rouge1", "rouge2", "hallucination_rate", "precision", "recall"],
        resamples=50,
    )
    for key in ("rouge2", "hallucination_rate", "recall"):
        alone = run_file(data, metrics=[key], resamples=50)
        assert alone["metrics"][key] == together["metrics"][key], key


def test_csv_and_jsonl_of_the_same_records_give_the_same_metrics():
    records = classification_records(150)
    rows = [
        {
            **{k: v for k, v in r.items() if k != "groups"},
            **{f"group.{a}": g for a, g in r["groups"].items()},
        }
        for r in records
    ]
    from_jsonl = run_file(jsonl(records), task="diagnostic_support", resamples=50)
    from_csv = run_file(
        csv_bytes(rows), filename="records.csv", task="diagnostic_support", resamples=50
    )
    for part in ("metrics", "groups", "fairness"):
        assert from_csv[part] == from_jsonl[part]
    assert from_csv["provenance"]["input_format"] == "csv"


def test_metrics_override_the_task_preset():
    data = jsonl(classification_records(50))
    result = run_file(data, task="clinical_documentation", metrics=["accuracy", "auroc"])
    assert list(result["metrics"]) == ["accuracy", "auroc"]
    assert result["fairness"] == {}


def test_a_preset_metric_without_its_fields_is_null_with_a_reason():
    records = [{"label": i % 2, "prediction": 1, "groups": {"sex": "F"}} for i in range(40)]
    result = run_file(jsonl(records), task="clinical_text_classification", resamples=20)
    auroc = result["metrics"]["auroc"]
    assert auroc == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "n": 0,
        "reason": 'no record carries "score"',
    }
    assert 'auroc: not computed (no record carries "score")' in result["warnings"]
    assert result["metrics"]["f1"]["value"] is not None


def test_one_class_only_gives_null_auroc_with_a_reason():
    records = [{"label": 1, "prediction": 1, "score": 0.1 * i} for i in range(1, 9)]
    result = run_file(jsonl(records), metrics=["auroc", "specificity", "recall"], resamples=20)
    assert result["metrics"]["auroc"]["value"] is None
    assert result["metrics"]["auroc"]["reason"] == "only one class (1) in label: AUROC needs both"
    assert result["metrics"]["specificity"]["reason"] == (
        "no negative labels: specificity is undefined"
    )
    assert result["metrics"]["recall"]["value"] == 1.0


def test_small_subgroups_are_reported_with_warnings():
    records = classification_records(300)
    for record in records[:6]:
        record["groups"]["sex"] = "X"
    result = run_file(
        jsonl(records),
        metrics=["accuracy", "recall", "equalized_odds_difference"],
        resamples=50,
        limits=Limits(min_group_size=30, min_group_positives=10, min_group_negatives=10),
    )
    small = result["groups"]["sex"]["X"]
    assert small["accuracy"]["value"] is not None
    assert "subgroup has 6 records, fewer than the minimum of 30" in small["accuracy"]["warnings"]
    assert any("positive labels" in w for w in small["recall"]["warnings"])
    assert not any("positive labels" in w for w in small["accuracy"]["warnings"])
    assert (
        "groups.sex.X: subgroup has 6 records, fewer than the minimum of 30" in result["warnings"]
    )
    assert "warnings" not in result["groups"]["sex"]["F"]["accuracy"]
    fairness = result["fairness"]["sex"]["equalized_odds_difference"]
    assert any(w.startswith('group "X" has only 6 records') for w in fairness["warnings"])


def test_records_without_a_group_value_are_left_out_with_a_warning():
    records = classification_records(100)
    for record in records[:7]:
        del record["groups"]["age"]
    result = run_file(jsonl(records), metrics=["accuracy"])
    sizes = sum(entry["accuracy"]["n"] for entry in result["groups"]["age"].values())
    assert sizes == 93
    assert (
        "groups.age: 7 record(s) have no value and are left out of its subgroups and fairness"
        in result["warnings"]
    )


def test_undefined_resamples_are_left_out_of_the_interval_with_a_warning():
    records = [{"label": 1, "prediction": 1}] * 2 + [{"label": 0, "prediction": 0}] * 8
    result = run_file(jsonl(records), metrics=["recall"], resamples=200)
    entry = result["metrics"]["recall"]
    assert entry["value"] == 1.0 and entry["ci_low"] == entry["ci_high"] == 1.0
    assert any("resamples left the metric undefined" in w for w in entry["warnings"])


def test_a_failing_metric_is_null_with_a_reason_and_the_run_goes_on(monkeypatch):
    def broken(ctx, key, unit):
        raise ArithmeticError("boom")

    monkeypatch.setitem(engine_module.BUILDERS, "recall", broken)
    result = run_file(jsonl(classification_records(30)), metrics=["recall", "accuracy"])
    assert result["metrics"]["recall"]["value"] is None
    assert result["metrics"]["recall"]["reason"] == "could not be computed: ArithmeticError: boom"
    assert result["metrics"]["accuracy"]["value"] is not None


def test_no_resamples_means_no_intervals():
    result = run_file(jsonl(classification_records(30)), metrics=["accuracy"], resamples=0)
    assert result["metrics"]["accuracy"]["ci_low"] is None
    assert result["provenance"]["resamples"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task": "radiology"}, "unknown task 'radiology'"),
        ({"metrics": ["f2"]}, "unknown metric 'f2'"),
        ({}, "name a task"),
        ({"metrics": ["f1"], "seed": -1}, "seed must be"),
        ({"metrics": ["f1"], "resamples": -5}, "resamples must be"),
    ],
)
def test_bad_arguments_raise_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        run_file(jsonl([{"label": 1, "prediction": 1}]), **options)


def test_every_task_preset_runs_on_a_file_with_every_field(monkeypatch):
    from lifecycle.metrics import semantic

    monkeypatch.setattr(semantic, "available", lambda: False)  # test_semantic.py loads it
    rng = np.random.default_rng(0)
    words = [
        "the",
        "patient",
        "reports",
        "chest",
        "pain",
        "and",
        "shortness",
        "of",
        "breath",
        "since",
        "yesterday",
    ]
    records = []
    for i in range(40):
        label = int(rng.integers(0, 2))
        records.append(
            {
                "id": f"r{i}",
                "label": label,
                "prediction": int(rng.integers(0, 2)),
                "score": float(rng.random()),
                "perturbed_prediction": label,
                "reference": " ".join(rng.choice(words, 8)),
                "output": " ".join(rng.choice(words, 6)),
                "input": " ".join(rng.choice(words, 12)),
                "prompt_id": f"p{i // 2}",
                "latency_ms": float(rng.gamma(2, 100)),
                "hallucinated": bool(rng.random() < 0.1),
                "completed": True,
                "empathy": 4,
                "trust": 3,
                "groups": {"sex": ["F", "M"][i % 2]},
            }
        )
    data = jsonl(records)
    for task in sorted(TASKS):
        result = run_file(data, task=task, resamples=20)
        json.dumps(result, allow_nan=False)
        assert list(result["metrics"]) == [
            k for k in TASK_PRESETS[task] if METRICS[k].kind != "fairness"
        ]
        for key, entry in result["metrics"].items():
            assert entry["value"] is not None or entry["reason"], (task, key)
        assert format_text(result).startswith("40 records")


def test_a_progress_callback_can_abort_the_run(monkeypatch):
    from lifecycle.metrics import bootstrap

    monkeypatch.setattr(bootstrap, "MAX_CHUNK_RESAMPLES", 10)  # 10 resamples a chunk
    monkeypatch.setattr(bootstrap, "PARALLEL_ELEMENTS", 1)  # on two threads
    chunks = []
    original = bootstrap._Resampler.chunk

    def counting(self, start, stop):
        chunks.append(start)
        return original(self, start, stop)

    monkeypatch.setattr(bootstrap._Resampler, "chunk", counting)

    class Reclaimed(Exception):
        pass

    def progress(fraction, message):
        if message.startswith("bootstrap"):
            raise Reclaimed

    with pytest.raises(Reclaimed):
        evaluate(
            io.BytesIO(jsonl(classification_records(300))),
            filename="r.jsonl",
            metrics=["auroc"],
            resamples=1000,
            progress=progress,
        )
    assert len(chunks) < 100  # the remaining chunks were dropped
