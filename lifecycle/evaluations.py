"""Reading evaluations: a gate's latest run, its results, and each criterion's verdict.

No writes here; the verdicts feed the gate conditions, the signature manifest and the pages.
"""

import operator
from dataclasses import dataclass

from lifecycle.models import (
    CriterionBound,
    CriterionScope,
    EvaluationResult,
    EvaluationRun,
    Gate,
    GateCriterion,
    ResultScope,
    RunStatus,
)

FAIRNESS_METRICS = {"demographic_parity_difference", "equalized_odds_difference"}
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


# The order that makes a gate's most recent succeeded run come first.
LATEST_FIRST = ("-finished_at", "-id")


def latest_run(gate: Gate) -> EvaluationRun | None:
    """The gate's most recent succeeded run: the one its criteria are judged on."""
    return (
        EvaluationRun.objects.filter(gate=gate, status=RunStatus.SUCCEEDED)
        .select_related("model_version", "dataset_version")
        .order_by(*LATEST_FIRST)
        .first()
    )


@dataclass(frozen=True)
class Verdict:
    criterion: GateCriterion
    status: str  # "pass", "fail" or "no data"
    observed: float | None
    detail: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


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


def judge(criterion: GateCriterion, results: list[EvaluationResult]) -> Verdict:
    """Judge one criterion on a run's results; for several rows (every subgroup, several
    attributes) the worst one decides."""
    rows = _rows_for(criterion, results)
    if not rows:
        return Verdict(criterion, "no data", None, f"the run has no {criterion.metric} result")
    compare = _COMPARE[criterion.comparator]
    bound = criterion.bound
    failing, missing, observed = [], [], []
    for row in rows:
        value = getattr(row, bound if bound != CriterionBound.VALUE else "value")
        where = (
            f"{row.group_attribute}={row.group_value}"
            if row.group_value
            else (row.group_attribute or "overall")
        )
        if value is None:
            missing.append(f"{where}: {row.reason or 'not computed'}")
            continue
        observed.append(value)
        if not compare(value, criterion.threshold):
            failing.append(f"{where} {value:.4g}")
    worst = None
    if observed:
        worst = min(observed) if criterion.comparator in (">=", ">") else max(observed)
    if missing and not failing:
        return Verdict(criterion, "no data", worst, "; ".join(missing))
    if failing or missing:
        return Verdict(criterion, "fail", worst, "; ".join(failing + missing))
    return Verdict(criterion, "pass", worst, f"{len(rows)} value(s) within bound")


def criteria_verdicts(gate: Gate, run: EvaluationRun | None = None) -> list[Verdict]:
    """Every criterion of the gate judged against `run` (default: its latest succeeded run)."""
    criteria = list(GateCriterion.objects.filter(gate=gate).order_by("id"))
    if not criteria:
        return []
    run = run or latest_run(gate)
    if run is None:
        return [Verdict(c, "no data", None, "no succeeded evaluation run") for c in criteria]
    results = list(run.results.all())
    return [judge(c, results) for c in criteria]


def manifest_section(gate: Gate) -> dict:
    """What a gate signature covers of the evaluation: the run, its numbers, the verdicts."""
    run = latest_run(gate)
    section: dict = {"run": None}
    if run is not None:
        section = {
            "run": run.pk,
            "file_sha256": run.sha256,
            "model_version": run.model_version.label,
            "dataset_version": run.dataset_version.label,
            "dataset_sha256": run.dataset_version.sha256,
            "engine_version": run.provenance.get("engine_version"),
            "seed": run.seed,
            "resamples": run.resamples,
            "results": [
                [
                    r.scope,
                    r.group_attribute,
                    r.group_value,
                    r.metric,
                    r.value,
                    r.ci_low,
                    r.ci_high,
                    r.n,
                ]
                for r in run.results.order_by("scope", "group_attribute", "group_value", "metric")
            ],
        }
    section["criteria"] = [
        {
            "expression": v.criterion.expression,
            "required": v.criterion.required,
            "verdict": v.status,
            "observed": v.observed,
        }
        for v in criteria_verdicts(gate, run)
    ]
    return section
