"""Gate criteria judged on evaluation results: pass, fail, no data or insufficient evidence,
and why.

No reads or writes here: `lifecycle.gates.readiness` fetches the criteria, the runs the gate is
judged on and their results.
"""

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

from lifecycle.evaluations.models import EvaluationResult, EvaluationRun, ResultScope
from lifecycle.gates.models import CriterionBound, CriterionScope, GateCriterion
from lifecycle.metrics.registry import FAIRNESS_METRICS

_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}

PASS, FAIL, NO_DATA, INSUFFICIENT = "pass", "fail", "no data", "insufficient evidence"

_BOUND_NAME = {
    CriterionBound.VALUE: "",
    CriterionBound.CI_LOW: "lower bound",
    CriterionBound.CI_HIGH: "upper bound",
}


@dataclass(frozen=True)
class Verdict:
    criterion: GateCriterion
    status: str  # PASS, FAIL, NO_DATA or INSUFFICIENT
    observed: float | None
    detail: str
    # The deciding number in words, e.g. "lower bound 0.8839 of recall 0.921".
    observed_text: str = ""
    runs: list[int] = field(default_factory=list)  # numbers of the runs the rows came from

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def badge(self) -> str:
        return ("✓ " if self.passed else "✗ ") + self.status


def _rows_for(criterion: GateCriterion, results: list[EvaluationResult]) -> list[EvaluationResult]:
    metric, attribute = criterion.metric, criterion.group_attribute
    if metric in FAIRNESS_METRICS:
        scope = ResultScope.FAIRNESS
    elif criterion.scope == CriterionScope.OVERALL:
        scope = ResultScope.OVERALL
    else:
        scope = ResultScope.GROUP
    return [
        r
        for r in results
        if r.metric == metric
        and r.scope == scope
        and (not attribute or scope == ResultScope.OVERALL or r.group_attribute == attribute)
    ]


def _where(row: EvaluationResult) -> str:
    if row.group_value:
        return f"{row.group_attribute}={row.group_value}"
    return row.group_attribute or "overall"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _describe(criterion: GateCriterion, row: EvaluationResult, value: float) -> str:
    """The compared number named for what it is: a bound is never shown as if it were the
    value."""
    bound = _BOUND_NAME[CriterionBound(criterion.bound)]
    where = _where(row)
    place = "" if where == "overall" else f" for {where}"
    if not bound:
        return f"{row.metric}{place} {_number(value)}"
    return (
        f"{bound} {_number(value)} of {row.metric}{place} {_number(row.value)} "
        f"(95% interval {_number(row.ci_low)}–{_number(row.ci_high)})"
    )


def _short_of_minimum(
    criterion: GateCriterion,
    rows: list[EvaluationResult],
    runs: Mapping[int, EvaluationRun],
    group_sizes: Mapping[tuple[int, str, str], int],
) -> list[str]:
    """Where the evidence is below the criterion's minimum number of records."""
    short = []
    if criterion.min_records:
        for run_id in sorted({row.run_id for row in rows}):
            run = runs.get(run_id)
            n = run.n_records if run is not None else None
            if n is None or n < criterion.min_records:
                label = f"run {run.number}" if run is not None else "the run"
                short.append(
                    f"{label} has {n or 0:,} records, fewer than {criterion.min_records:,}"
                )
    minimum = criterion.min_group_records
    if minimum:
        for row in rows:
            if row.scope == ResultScope.GROUP:
                if (row.n or 0) < minimum:
                    short.append(
                        f"{_where(row)} has {row.n or 0:,} records, fewer than {minimum:,}"
                    )
            elif row.scope == ResultScope.FAIRNESS:
                sizes = {
                    value: n
                    for (run_id, attribute, value), n in group_sizes.items()
                    if run_id == row.run_id and attribute == row.group_attribute
                }
                if not sizes:
                    short.append(
                        f"{row.group_attribute}: the run has no subgroup sizes to check against "
                        f"{minimum:,} records (upload it with a subgroup metric too)"
                    )
                    continue
                small = sorted(f"{v} ({n:,})" for v, n in sizes.items() if n < minimum)
                if small:
                    short.append(
                        f"{row.group_attribute}: group(s) {', '.join(small)} below {minimum:,} "
                        "records"
                    )
    return short


def judge(
    criterion: GateCriterion,
    results: list[EvaluationResult],
    runs: Mapping[int, EvaluationRun] | None = None,
    group_sizes: Mapping[tuple[int, str, str], int] | None = None,
) -> Verdict:
    """Judge one criterion on the results of the runs the gate is judged on; for several rows
    (every subgroup, several attributes, several runs) the worst one decides.

    A required criterion is never satisfied by a declared subset run, nor by fewer records than
    its minimum (overall or per subgroup): that is insufficient evidence, never a pass.
    """
    runs = runs or {}
    rows = _rows_for(criterion, results)
    numbers = sorted({runs[r.run_id].number for r in rows if r.run_id in runs})
    if not rows:
        return Verdict(criterion, NO_DATA, None, f"the run has no {criterion.metric} result")
    subset_runs = [runs[i] for i in {r.run_id for r in rows} if i in runs and runs[i].is_subset]
    if criterion.required and subset_runs:
        rows = [r for r in rows if not (r.run_id in runs and runs[r.run_id].is_subset)]
        if not rows:
            run = subset_runs[0]
            return Verdict(
                criterion,
                INSUFFICIENT,
                None,
                f"run {run.number} is a declared subset of {run.dataset_version.label} "
                f"({run.subset_reason}): a subset never satisfies a required criterion",
                runs=numbers,
            )
    compare = _COMPARE[criterion.comparator]
    bound = criterion.bound
    failing, missing = [], []
    observed: list[tuple[float, str]] = []
    for row in rows:
        value = getattr(row, bound if bound != CriterionBound.VALUE else "value")
        if value is None:
            missing.append(f"{_where(row)}: {row.reason or 'not computed'}")
            continue
        text = _describe(criterion, row, value)
        observed.append((value, text))
        if not compare(value, criterion.threshold):
            failing.append(text)
    worst, worst_text = None, ""
    if observed:
        pick = min if criterion.comparator in (">=", ">") else max
        worst, worst_text = pick(observed, key=lambda pair: pair[0])
    short = _short_of_minimum(criterion, rows, runs, group_sizes or {})
    if missing and not failing:
        return Verdict(criterion, NO_DATA, worst, "; ".join(missing), worst_text, numbers)
    if failing or missing:
        return Verdict(
            criterion, FAIL, worst, "; ".join(failing + missing + short), worst_text, numbers
        )
    if short:
        return Verdict(
            criterion,
            INSUFFICIENT,
            worst,
            "; ".join(short) + " — the values pass, but on too few records",
            worst_text,
            numbers,
        )
    return Verdict(
        criterion, PASS, worst, f"{len(rows)} value(s) within bound", worst_text, numbers
    )


def verdicts(
    criteria: list[GateCriterion],
    runs: list[EvaluationRun],
    results: list[EvaluationResult],
    group_sizes: Mapping[tuple[int, str, str], int] | None = None,
    *,
    no_run: str = "no succeeded evaluation run",
) -> list[Verdict]:
    """Each criterion judged on the `results` of `runs` (no run: no data, saying why)."""
    if not runs:
        return [Verdict(c, NO_DATA, None, no_run) for c in criteria]
    by_id = {run.pk: run for run in runs}
    return [judge(c, results, by_id, group_sizes) for c in criteria]
