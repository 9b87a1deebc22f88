"""Gate criteria judged on evaluation results: pass, fail or no data, and why.

No reads or writes here: `lifecycle.gates.readiness` fetches the criteria and results.
"""

import operator
from dataclasses import dataclass

from lifecycle.evaluations.models import EvaluationResult, EvaluationRun, ResultScope
from lifecycle.gates.models import CriterionBound, CriterionScope, GateCriterion
from lifecycle.metrics.registry import FAIRNESS_METRICS

_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


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


def verdicts(
    criteria: list[GateCriterion], run: EvaluationRun | None, results: list[EvaluationResult]
) -> list[Verdict]:
    """Each criterion judged on `run`'s `results` (no run: no data)."""
    if run is None:
        return [Verdict(c, "no data", None, "no succeeded evaluation run") for c in criteria]
    return [judge(c, results) for c in criteria]
