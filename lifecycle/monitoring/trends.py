"""The trends of a monitoring plan: per watched metric and cohort, the batch values in period
order against the baseline run's value, with the alert rules applied (`rules.evaluate_series`).

Reads only, in a fixed number of queries whatever the number of batches, metrics and cohorts:
the baseline's results, the batches, all their results, and the monitoring gate's criteria.
The caller decides who may see the plan; the monitoring page, the API and the analysis job all
read the same trends from here.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from lifecycle.evaluations.models import EvaluationResult, ResultScope, RunStatus
from lifecycle.gates.models import CriterionScope, GateCriterion
from lifecycle.metrics.registry import FAIRNESS_METRICS
from lifecycle.monitoring.models import MonitoringBatch, MonitoringPlan
from lifecycle.monitoring.rules import Criterion, Observation, TrendPoint, evaluate_series
from lifecycle.phases import Phase

# A trend's cohort: (scope, group attribute, group value) as EvaluationResult stores them.
Cohort = tuple[str, str, str]

# Overall first, then fairness between groups, then each subgroup.
_SCOPE_ORDER: dict[str, int] = {
    ResultScope.OVERALL: 0,
    ResultScope.FAIRNESS: 1,
    ResultScope.GROUP: 2,
}

NO_RESULT = Observation(None, None, None, None)

# The result fields a trend reads (results also hold curves and bins, which it does not).
_COLUMNS = (
    *("run", "metric", "scope", "group_attribute", "group_value"),
    *("value", "ci_low", "ci_high", "n"),
)


@dataclass
class Trend:
    """One metric of one cohort across the monitoring batches, against the baseline."""

    metric: str
    scope: str  # "overall" | "group" | "fairness" (EvaluationResult.scope values)
    group_attribute: str
    group_value: str
    baseline: Observation
    criteria: list[Criterion] = field(default_factory=list)
    points: list[TrendPoint] = field(default_factory=list)

    @property
    def label(self) -> str:
        """ "auroc", "auroc — age_band = 65+" or "demographic_parity_difference (sex)"."""
        if self.scope == ResultScope.GROUP:
            return f"{self.metric} — {self.group_attribute} = {self.group_value}"
        if self.scope == ResultScope.FAIRNESS:
            return f"{self.metric} ({self.group_attribute})"
        return self.metric

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(metric, scope, group attribute, group value): how a signal names its trend."""
        return (self.metric, self.scope, self.group_attribute, self.group_value)

    @property
    def latest_signals(self) -> tuple[str, ...]:
        """The signals of the last batch (none before the first batch)."""
        return self.points[-1].signals if self.points else ()


def _observation(row: EvaluationResult) -> Observation:
    return Observation(row.value, row.ci_low, row.ci_high, row.n)


def _applies(criterion: GateCriterion, cohort: Cohort) -> bool:
    """Whether a monitoring-gate criterion (on the trend's metric) is drawn and checked on the
    trend of `cohort`: the same rows `lifecycle.gates.criteria` judges it on."""
    scope, attribute, _ = cohort
    named = criterion.group_attribute
    if criterion.metric in FAIRNESS_METRICS:
        return scope == ResultScope.FAIRNESS and (not named or named == attribute)
    if criterion.scope == CriterionScope.OVERALL:
        return scope == ResultScope.OVERALL
    return scope == ResultScope.GROUP and (not named or named == attribute)


def _watched(rows: Iterable[EvaluationResult], cohorts: set[str]) -> list[EvaluationResult]:
    """The rows of the watched cohorts: overall always; subgroups and fairness of the plan's
    group attributes (every attribute when the plan names none)."""
    return [
        row
        for row in rows
        if row.scope == ResultScope.OVERALL or not cohorts or row.group_attribute in cohorts
    ]


def plan_trends(plan: MonitoringPlan, *, through: MonitoringBatch | None = None) -> list[Trend]:
    """Every watched metric (plan.metrics) x cohort (plan.cohorts; empty = every attribute in
    the baseline or the batches) with a baseline value or a batch value, in a stable order
    (overall first, then fairness, then subgroups; metric order of plan.metrics).

    The batches are the project's monitoring batches whose run succeeded, in period order, up
    to and including `through` when given. A batch without a result for a cohort is still a
    point of its trend (no value: nothing to judge, the CUSUM carried forward), so every trend
    of a plan has the same batches.
    """
    metrics = [m for m in dict.fromkeys(plan.metrics) if isinstance(m, str)]
    cohorts = {c for c in plan.cohorts if isinstance(c, str)}
    baseline_rows = _watched(
        EvaluationResult.objects.filter(run_id=plan.baseline_run_id, metric__in=metrics).only(
            *_COLUMNS
        ),
        cohorts,
    )
    batches = MonitoringBatch.objects.filter(
        project_id=plan.project_id, run__status=RunStatus.SUCCEEDED
    )
    if through is not None:
        batches = batches.filter(period_start__lte=through.period_start)
    batch_list = list(
        batches.order_by("period_start", "number").values_list("number", "period_start", "run_id")
    )
    batch_rows = (
        _watched(
            EvaluationResult.objects.filter(
                run_id__in=[run_id for _, _, run_id in batch_list], metric__in=metrics
            ).only(*_COLUMNS),
            cohorts,
        )
        if batch_list
        else []
    )
    criteria = list(
        GateCriterion.objects.filter(
            gate__project_id=plan.project_id, gate__phase=Phase.MONITORING, metric__in=metrics
        ).order_by("id")
    )

    def cohort_of(row: EvaluationResult) -> Cohort:
        return (row.scope, row.group_attribute, row.group_value)

    baseline = {(row.metric, cohort_of(row)): row for row in baseline_rows}
    by_batch = {(row.run_id, row.metric, cohort_of(row)): row for row in batch_rows}
    present = {
        (row.metric, cohort_of(row))
        for row in (*baseline_rows, *batch_rows)
        if row.value is not None and row.scope in _SCOPE_ORDER
    }
    order = {metric: index for index, metric in enumerate(metrics)}
    trends = []
    for metric, cohort in sorted(
        present, key=lambda mc: (_SCOPE_ORDER[mc[1][0]], order[mc[0]], mc[1][1], mc[1][2])
    ):
        base_row = baseline.get((metric, cohort))
        base = _observation(base_row) if base_row is not None else NO_RESULT
        applicable = [
            Criterion(c.expression, c.comparator, c.threshold, c.required)
            for c in criteria
            if c.metric == metric and _applies(c, cohort)
        ]
        series = []
        for number, period_start, run_id in batch_list:
            row = by_batch.get((run_id, metric, cohort))
            series.append(
                (number, period_start.isoformat(), _observation(row) if row else NO_RESULT)
            )
        points = evaluate_series(base, series, applicable, k=plan.cusum_k, h=plan.cusum_h)
        scope, attribute, value = cohort
        trends.append(Trend(metric, scope, attribute, value, base, applicable, points))
    return trends
