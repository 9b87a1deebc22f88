"""Drift benchmark: prints numbers, asserts nothing.

    python benchmarks/monitoring.py [--part a|b|both] [--records 1000000] [--trace-files]

A baseline and a current batch of N records each (default 1,000,000) with five numeric fields
(score, latency_ms, empathy, trust, risk; a tenth of the ratings missing) and three group
attributes (sex, age_band, site); the current batch is shifted in one site.

(a) `lifecycle.metrics.drift.drift` on the two already-parsed datasets (the columns the record
    contract's parser returns): the goal, under 5 s and 1 GB on a 2-core machine.
(b) End to end from two JSON Lines files: both read and validated by `parse_records`, then
    drift. Informational: parsing two million records costs far more than the statistics, and
    the parsed records themselves take more than 1 GB; the goal is not for this part.

Each part runs in a fresh child process: once timed (wall time, and how far the process's peak
RSS rose above what it was before the measurement: `getrusage` max RSS delta), then once under
tracemalloc (the peak of memory allocated by Python and numpy during the measurement; tracing
slows the run, so its time is not the one reported). Part (b) is traced only with
`--trace-files`: tracing millions of parsed values adds minutes. Timings exclude imports and
generating the data. The machine's load average is printed, and the CPU time beside the wall
time: other work on a 2-core machine stretches the wall time, hardly the CPU time.
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_SECONDS = 5.0
GOAL_MB = 1024.0
SEXES = ["F", "M"]
AGE_BANDS = ["18-39", "40-64", "65-79", "80+"]
SITES = ["north", "south", "east", "west"]


def columns(
    n: int, *, seed: int, shifted: bool
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Numeric columns (None where a record lacks the field) and group columns, as the parser
    returns them; `shifted` makes the east site slower and riskier."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(SEXES, n)
    age = rng.choice(AGE_BANDS, n, p=[0.25, 0.35, 0.25, 0.15])
    site = rng.choice(SITES, n)
    east = (site == "east") if shifted else np.zeros(n, dtype=bool)
    score = rng.beta(2, 5, n)
    latency = rng.gamma(2.0, 400.0, n) * np.where(east, 1.5, 1.0)
    risk = rng.normal(0.0, 1.0, n) + np.where(east, 0.5, 0.0)
    numeric: dict[str, list[Any]] = {
        "score": score.tolist(),
        "latency_ms": latency.round(1).tolist(),
        "risk": risk.tolist(),
    }
    for name in ("empathy", "trust"):
        rating = rng.integers(1, 6, n).astype(float).tolist()
        for index in np.flatnonzero(rng.random(n) < 0.1).tolist():
            rating[index] = None  # not every patient rates
        numeric[name] = rating
    groups = {"sex": sex.tolist(), "age_band": age.tolist(), "site": site.tolist()}
    return numeric, groups


def write_jsonl(path: Path, numeric: dict[str, list[Any]], groups: dict[str, list[Any]]) -> None:
    names = list(numeric)
    attributes = list(groups)
    with path.open("w") as out:
        for i in range(len(numeric["score"])):
            record: dict[str, Any] = {
                name: numeric[name][i] for name in names if numeric[name][i] is not None
            }
            record["groups"] = {attribute: groups[attribute][i] for attribute in attributes}
            out.write(json.dumps(record) + "\n")


# --- what the child processes run -------------------------------------------------------------


def measure(work: Any, *, traced: bool = True) -> dict[str, float | None]:
    """Run `work()` timed, then (if `traced`) again under tracemalloc."""
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu_started = time.perf_counter(), time.process_time()
    work()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    rss_delta = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    report: dict[str, float | None] = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_delta_mb": rss_delta / 1024,  # Linux reports ru_maxrss in KiB
        "traced_peak_mb": None,
    }
    if traced:
        gc.collect()
        tracemalloc.start()
        work()
        report["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return report


def child_parsed(n: int) -> dict[str, float | None]:
    from lifecycle.metrics.drift import drift
    from lifecycle.metrics.records import Dataset

    def dataset(seed: int, shifted: bool) -> Dataset:
        numeric, groups = columns(n, seed=seed, shifted=shifted)
        return Dataset(
            n=n,
            input_format="jsonl",
            sha256="",
            size_bytes=0,
            lines=[],
            ids=[],
            columns=numeric,
            groups=groups,
        )

    baseline, current = dataset(1, False), dataset(2, True)
    return measure(lambda: drift(baseline, current))


def child_files(baseline_path: str, current_path: str, traced: str) -> dict[str, float | None]:
    from lifecycle.metrics.drift import drift_files

    def work() -> None:
        with open(baseline_path, "rb") as baseline, open(current_path, "rb") as current:
            drift_files(
                baseline,
                Path(baseline_path).name,
                current,
                Path(current_path).name,
            )

    return measure(work, traced=traced == "traced")


def run_child(*args: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; return its report."""
    done = subprocess.run(  # noqa: S603 - this script, with arguments it made itself
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def verdict(value: float, goal: float) -> str:
    return "meets the goal" if value < goal else "MISSES the goal"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    parser.add_argument("--records", type=int, default=1_000_000, help="per file")
    parser.add_argument(
        "--trace-files",
        action="store_true",
        help="(b) also under tracemalloc: minutes more, tracing millions of parsed values",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()

    if options.child:
        kind, *rest = options.child
        report = child_parsed(int(rest[0])) if kind == "parsed" else child_files(*rest)
        print(json.dumps(report))
        return

    n = options.records
    if not 1 <= n <= 1_000_000:
        parser.error("--records must be between 1 and 1,000,000 (the record contract's limit)")
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f} (1 min)")
    print(
        f"{n:,} baseline vs {n:,} current records; 5 numeric fields (score, latency_ms, "
        "empathy, trust, risk), 3 group attributes (sex, age_band, site)"
    )
    if options.part in ("a", "both"):
        parsed = run_child("parsed", str(n))
        print("\n(a) drift on already-parsed columns (the goal: < 5 s, < 1 GB)")
        print(
            f"  time: {parsed['seconds']:.2f} s wall, {parsed['cpu_seconds']:.2f} s CPU "
            f"(goal < {GOAL_SECONDS:.0f} s: {verdict(parsed['seconds'], GOAL_SECONDS)})"
        )
        for label, key in (
            ("peak traced memory (tracemalloc)", "traced_peak_mb"),
            ("rise of peak RSS (getrusage)", "rss_delta_mb"),
        ):
            print(
                f"  {label}: {parsed[key]:.0f} MB "
                f"(goal < {GOAL_MB:.0f} MB: {verdict(parsed[key], GOAL_MB)})"
            )
    if options.part in ("b", "both"):
        with tempfile.TemporaryDirectory() as folder:
            paths = [Path(folder) / "baseline.jsonl", Path(folder) / "current.jsonl"]
            for path, seed, shifted in zip(paths, (1, 2), (False, True), strict=True):
                write_jsonl(path, *columns(n, seed=seed, shifted=shifted))
            size_mb = sum(path.stat().st_size for path in paths) / 2**20
            traced = "traced" if options.trace_files else "untraced"
            files = run_child("files", *map(str, paths), traced)
        print(
            f"\n(b) end to end from two JSON Lines files ({size_mb:.0f} MB) through "
            "parse_records, then drift (informational: no goal, parsing dominates)"
        )
        print(
            f"  time: {files['seconds']:.2f} s wall, {files['cpu_seconds']:.2f} s CPU (may exceed "
            "5 s: parsing, not the statistics)"
        )
        if files["traced_peak_mb"] is None:
            print("  peak traced memory (tracemalloc): not measured (--trace-files to measure)")
        else:
            print(f"  peak traced memory (tracemalloc): {files['traced_peak_mb']:.0f} MB")
        print(
            f"  rise of peak RSS (getrusage): {files['rss_delta_mb']:.0f} MB (may exceed 1 GB: "
            "the parsed records are held in memory)"
        )


if __name__ == "__main__":
    main()
