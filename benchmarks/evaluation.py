"""Evaluation engine benchmark: prints numbers, asserts nothing.

    python benchmarks/evaluation.py [--part a|b|both] [--records 100000]
        [--large-records 1000000] [--text-records 10000] [--repeat 1]

(a) 100,000 binary records with two group attributes (sex: 2 values, age band: 4), the
    clinical_text_classification suite (precision, recall, F1, AUROC, ECE, confusion matrix,
    attack success rate) per subgroup, demographic parity and equalized odds per attribute, and
    1,000-resample percentile bootstrap intervals: wall time and peak memory, beside two loops
    over the same resamples of the same data (a few resamples timed, scaled to 1,000): the
    naive one, which calls scikit-learn and fairlearn once per resample, and a plain
    scikit-learn loop, which computes the fairness differences from scikit-learn's confusion
    matrices instead of fairlearn's MetricFrame. Goals: at least 20x faster than the naive
    loop, under 5 s on a 2-core machine, under 1 GB.
    Then the same run on 1,000,000 records (`--large-records`, 0 to skip): its time as a
    multiple of the 100,000-record run and its peak memory. Goals: at most 12x, at most 1.5 GB.
(b) 10,000 generation records with the summarisation suite (evidence_synthesis: ROUGE-1/2/L,
    compression ratio, hallucination rate) with intervals and one group attribute, beside
    rouge-score's own time to score the records once. Goal: at most 1.5x that.

Each measurement runs in a fresh child process, so its peak RSS is its own. Timings exclude
imports and include reading and validating the file; beside the wall time each engine run
prints its CPU time (user + system), which other work on the machine disturbs less. The
machine's load average is printed: other work on a 2-core machine slows everything here.
With `--repeat N` each engine run is measured N times (the 100,000- and 1,000,000-record
runs taking turns) and the medians are used.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_VOCABULARY = (
    "patient presented with acute chest pain shortness of breath fever cough history of "
    "hypertension diabetes mellitus type two chronic kidney disease was admitted for "
    "observation and treated with intravenous antibiotics aspirin heparin the electrocardiogram "
    "showed sinus rhythm troponin levels were elevated echocardiogram revealed reduced ejection "
    "fraction discharged home on day three follow up in clinic in two weeks"
)
WORDS = _VOCABULARY.split()


def write_classification(path: Path, n: int) -> None:
    rng = np.random.default_rng(42)
    score = rng.random(n)
    label = (rng.random(n) < score).astype(int)
    prediction = (score > 0.5).astype(int)
    perturbed = np.where(rng.random(n) < 0.1, 1 - prediction, prediction)
    sex = rng.choice(["F", "M"], n)
    age = rng.choice(["18-39", "40-64", "65-79", "80+"], n)
    with path.open("w") as out:
        for i in range(n):
            record = {
                "id": f"r{i}",
                "label": int(label[i]),
                "prediction": int(prediction[i]),
                "score": float(score[i]),
                "perturbed_prediction": int(perturbed[i]),
                "groups": {"sex": str(sex[i]), "age": str(age[i])},
            }
            out.write(json.dumps(record) + "\n")


def write_generation(path: Path, n: int) -> None:
    rng = np.random.default_rng(7)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS, words)) + "."

    with path.open("w") as out:
        for i in range(n):
            record = {
                "id": f"g{i}",
                "input": text(int(rng.integers(150, 400))),
                "reference": text(int(rng.integers(40, 80))),
                "output": text(int(rng.integers(40, 80))),
                "hallucinated": bool(rng.random() < 0.05),
                "groups": {"site": str(rng.choice(["north", "south", "east"]))},
            }
            out.write(json.dumps(record) + "\n")


# --- what the child processes run -------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_engine(path: str, task: str) -> dict:
    from lifecycle.metrics import evaluate

    cpu = cpu_seconds()
    started = time.perf_counter()
    with open(path, "rb") as stream:
        result = evaluate(stream, filename=Path(path).name, task=task, resamples=1000, seed=0)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "metrics": len(result["metrics"]),
        "warnings": result["warnings"],
    }


def read_classification(path: str) -> tuple[np.ndarray, ...]:
    with open(path) as lines:
        rows = [json.loads(line) for line in lines]
    y = np.array([r["label"] for r in rows])
    p = np.array([r["prediction"] for r in rows])
    s = np.array([r["score"] for r in rows])
    q = np.array([r["perturbed_prediction"] for r in rows])
    sex = np.array([r["groups"]["sex"] for r in rows])
    age = np.array([r["groups"]["age"] for r in rows])
    return y, p, s, q, sex, age


def child_plain(path: str, resamples: int) -> dict:
    """The plain scikit-learn loop: every metric of suite (a) recomputed on each resample by
    scikit-learn (and numpy for ECE, the attack success rate and the group rates, which
    scikit-learn does not offer), per subgroup; the fairness differences from scikit-learn's
    confusion matrix per group, with fairlearn's definitions (a rate with no records is 0)."""
    import warnings

    from sklearn.metrics import (
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    from lifecycle.metrics.bootstrap import resample_indices

    y, p, s, q, sex, age = read_classification(path)
    attributes = {"sex": sex, "age": age}
    n = y.size

    def suite(y, p, s, q):
        precision_score(y, p)
        recall_score(y, p)
        f1_score(y, p)
        roc_auc_score(y, s)
        confusion_matrix(y, p, labels=[0, 1])
        bins = np.minimum(np.floor(s * 10).astype(int), 9)
        sum(abs((y - s)[bins == b].sum()) for b in range(10)) / y.size
        correct = y == p
        (q[correct] != y[correct]).mean()

    def differences(y, p, groups):
        selection, tpr, fpr = [], [], []
        for value in np.unique(groups):
            mask = groups == value
            tn, fp, fn, tp = confusion_matrix(y[mask], p[mask], labels=[0, 1]).ravel()
            selection.append((tp + fp) / mask.sum())
            tpr.append(tp / (tp + fn) if tp + fn else 0.0)
            fpr.append(fp / (fp + tn) if fp + tn else 0.0)
        parity = max(selection) - min(selection)
        odds = max(max(tpr) - min(tpr), max(fpr) - min(fpr))
        return parity, odds

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(resamples):
            i = resample_indices(0, n, b)
            yy, pp, ss, qq = y[i], p[i], s[i], q[i]
            suite(yy, pp, ss, qq)
            for groups in attributes.values():
                g = groups[i]
                for value in np.unique(g):
                    mask = g == value
                    suite(yy[mask], pp[mask], ss[mask], qq[mask])
                differences(yy, pp, g)
    return {"seconds_per_resample": (time.perf_counter() - started) / resamples}


def child_naive(path: str, resamples: int) -> dict:
    """The naive loop: every metric of suite (a) recomputed by its library on each resample."""
    import warnings

    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    from lifecycle.metrics.bootstrap import resample_indices

    y, p, s, q, sex, age = read_classification(path)
    attributes = {"sex": sex, "age": age}
    n = y.size

    def suite(y, p, s, q):
        precision_score(y, p)
        recall_score(y, p)
        f1_score(y, p)
        roc_auc_score(y, s)
        bins = np.minimum(np.floor(s * 10).astype(int), 9)
        sum(abs((y - s)[bins == b].sum()) for b in range(10)) / y.size
        correct = y == p
        (q[correct] != y[correct]).mean()

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(resamples):
            i = resample_indices(0, n, b)
            yy, pp, ss, qq = y[i], p[i], s[i], q[i]
            suite(yy, pp, ss, qq)
            for groups in attributes.values():
                g = groups[i]
                for value in np.unique(g):
                    mask = g == value
                    suite(yy[mask], pp[mask], ss[mask], qq[mask])
                demographic_parity_difference(yy, pp, sensitive_features=g)
                equalized_odds_difference(yy, pp, sensitive_features=g)
    return {"seconds_per_resample": (time.perf_counter() - started) / resamples}


def child_rouge(path: str) -> dict:
    from rouge_score.rouge_scorer import RougeScorer

    with open(path) as lines:
        rows = [json.loads(line) for line in lines]
    started = time.perf_counter()
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for row in rows:
        scorer.score(row["reference"], row["output"])
    return {"seconds": time.perf_counter() - started}


def run_child(*args: str) -> dict:
    """Run one measurement in a fresh interpreter; return its report and peak RSS."""
    done = subprocess.run(  # noqa: S603 - this script, with arguments it made itself
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def engine_runs(paths: list[Path], task: str, repeat: int) -> list[dict]:
    """The engine on each file, `repeat` times in fresh processes, the files taking turns (so
    a change in the machine's load falls on all of them): per file, the medians of wall and
    CPU time, the largest peak RSS and every wall time."""
    runs: list[list[dict]] = [[] for _ in paths]
    for _ in range(repeat):
        for path, done in zip(paths, runs, strict=True):
            done.append(run_child("engine", str(path), task))
    return [summarise(done) for done in runs]


def summarise(runs: list[dict]) -> dict:
    walls = sorted(run["seconds"] for run in runs)
    return {
        "seconds": float(np.median(walls)),
        "cpu_seconds": float(np.median([run["cpu_seconds"] for run in runs])),
        "max_rss_mb": max(run["max_rss_mb"] for run in runs),
        "walls": walls,
    }


def describe(engine: dict) -> str:
    walls = engine["walls"]
    spread = f" (runs {walls[0]:.2f}-{walls[-1]:.2f} s)" if len(walls) > 1 else ""
    return (
        f"{engine['seconds']:.2f} s wall{spread}, {engine['cpu_seconds']:.1f} s CPU, "
        f"peak RSS {engine['max_rss_mb']:.0f} MB"
    )


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} (1 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument(
        "--large-records",
        type=int,
        default=1_000_000,
        help="records of the scale run of part (a), compared with --records (0: skip it)",
    )
    parser.add_argument("--text-records", type=int, default=10_000)
    parser.add_argument("--naive-resamples", type=int, default=3)
    parser.add_argument("--plain-resamples", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="engine runs per measurement")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()

    if options.child:
        kind, *rest = options.child
        if kind == "engine":
            report = child_engine(*rest)
        elif kind == "naive":
            report = child_naive(rest[0], int(rest[1]))
        elif kind == "plain":
            report = child_plain(rest[0], int(rest[1]))
        else:
            report = child_rouge(*rest)
        report["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(report))
        return

    print(f"cores: {os.cpu_count()}, {load()}")
    with tempfile.TemporaryDirectory() as folder:
        if options.part in ("a", "both"):
            path = Path(folder) / "classification.jsonl"
            write_classification(path, options.records)
            task = "clinical_text_classification"
            paths = [path]
            if options.large_records:
                paths.append(Path(folder) / "large.jsonl")
                write_classification(paths[1], options.large_records)
            engine, *scale = engine_runs(paths, task, options.repeat)
            naive = run_child("naive", str(path), str(options.naive_resamples))
            plain = run_child("plain", str(path), str(options.plain_resamples))
            naive_total = naive["seconds_per_resample"] * 1000
            plain_total = plain["seconds_per_resample"] * 1000
            print(f"\n(a) {options.records:,} binary records, 2 group attributes, 1,000 resamples")
            print(f"  engine: {describe(engine)}")
            print(
                f"  naive loop (scikit-learn + fairlearn): {naive['seconds_per_resample']:.2f} s "
                f"per resample ({options.naive_resamples} timed) -> {naive_total:.0f} s for 1,000"
            )
            print(
                f"  plain scikit-learn loop: {plain['seconds_per_resample']:.3f} s per resample "
                f"({options.plain_resamples} timed) -> {plain_total:.0f} s for 1,000"
            )
            print(
                f"  speed-up: {naive_total / engine['seconds']:.0f}x the naive loop, "
                f"{plain_total / engine['seconds']:.0f}x the plain scikit-learn loop "
                "(goal >= 20x the naive loop; < 5 s; < 1 GB)"
            )
            if scale:
                large = scale[0]
                ratio = large["seconds"] / engine["seconds"]
                cpu_ratio = large["cpu_seconds"] / engine["cpu_seconds"]
                print(f"\n(a) at {options.large_records:,} records, the same run")
                print(f"  engine: {describe(large)}")
                print(
                    f"  {ratio:.1f}x the {options.records:,}-record run "
                    f"({cpu_ratio:.1f}x its CPU time); peak RSS "
                    f"{large['max_rss_mb'] / 1024:.2f} GB (goals: <= 12x, <= 1.5 GB)"
                )
        if options.part in ("b", "both"):
            path = Path(folder) / "generation.jsonl"
            write_generation(path, options.text_records)
            (engine,) = engine_runs([path], "evidence_synthesis", options.repeat)
            rouge = run_child("rouge", str(path))
            print(f"\n(b) {options.text_records:,} generation records, summarisation suite + CIs")
            print(f"  engine: {describe(engine)}")
            print(f"  rouge-score alone, once: {rouge['seconds']:.2f} s")
            print(f"  ratio: {engine['seconds'] / rouge['seconds']:.2f}x (goal <= 1.5x)")
    print(f"\n{load()}")


if __name__ == "__main__":
    main()
