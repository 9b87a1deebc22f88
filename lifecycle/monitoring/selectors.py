"""Reads about monitoring for a project the caller may already see (the pages and the API get
the project restricted to the user first): the plan and its baseline candidates, the overview
the monitoring page and the API show, incidents, and the dashboard's flags."""

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone

from governance.models import Project
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun, ResultScope, RunStatus
from lifecycle.gates.models import Gate, GateState
from lifecycle.monitoring.models import (
    OPEN_INCIDENT_STATUSES,
    BatchStatus,
    Incident,
    IncidentEvent,
    IncidentSource,
    MonitoringBatch,
    MonitoringPlan,
    MonitoringSignal,
)
from lifecycle.monitoring.trends import Trend, plan_trends
from lifecycle.phases import Phase

# The gates whose approved evidence may be the monitoring baseline.
BASELINE_PHASES = (Phase.DEVELOPMENT, Phase.DEPLOYMENT)


def monitoring_gate(project: Project) -> Gate:
    """The project's monitoring gate (every project has one)."""
    return Gate.objects.select_related("project").get(project=project, phase=Phase.MONITORING)


def baseline_candidates(project: Project) -> list[EvaluationRun]:
    """The runs a plan may compare with: the designated evidence of the approved development
    and deployment gates that succeeded, newest first."""
    return list(
        EvaluationRun.objects.filter(
            evidence_for__project=project,
            evidence_for__phase__in=BASELINE_PHASES,
            evidence_for__state=GateState.APPROVED,
            status=RunStatus.SUCCEEDED,
        )
        .select_related("gate", "model_version", "dataset_version")
        .distinct()
        .order_by("-number")
    )


def baseline_result_keys(run: EvaluationRun) -> tuple[set[str], set[str]]:
    """The metrics the run has a value for, and the group attributes it has subgroups of."""
    rows = EvaluationResult.objects.filter(run=run).values_list(
        "metric", "scope", "group_attribute", "value"
    )
    metrics = {metric for metric, scope, _, value in rows if value is not None}
    cohorts = {attribute for _, scope, attribute, _ in rows if scope == ResultScope.GROUP}
    return metrics, cohorts


def review_due(plan: MonitoringPlan, gate: Gate) -> datetime.datetime:
    """When the next periodic review is due: one review interval after the monitoring gate's
    approval while it stands approved; while a review is under way, the date it was due;
    before any, one interval after monitoring started."""
    interval = datetime.timedelta(days=plan.review_interval_days)
    if gate.state == GateState.APPROVED and gate.decided_at is not None:
        return gate.decided_at + interval
    if plan.review_due_at is not None:
        return plan.review_due_at
    start = datetime.datetime.combine(plan.starts_on, datetime.time.min, tzinfo=datetime.UTC)
    return start + interval


def monitoring_plan_of(project: Project) -> MonitoringPlan | None:
    return (
        MonitoringPlan.objects.filter(project=project)
        .select_related("baseline_run__gate", "baseline_run__model_version", "updated_by")
        .first()
    )


@dataclass(frozen=True)
class DriftRow:
    """One numeric field or group attribute of a batch's drift, for the drift table."""

    kind: str  # "field" or "group"
    name: str
    psi: float | None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    wasserstein: float | None = None
    chi2_pvalue: float | None = None
    alert: bool = False


def drift_rows(drift: dict[str, Any], psi_alert: float) -> list[DriftRow]:
    """A stored drift report as rows, worst first (highest PSI; fields without one last)."""

    def value(statistics: dict[str, Any], key: str) -> float | None:
        found = (statistics.get(key) or {}).get("value")
        return float(found) if isinstance(found, int | float) else None

    rows = []
    for kind, section in (("field", "fields"), ("group", "groups")):
        for name, statistics in (drift.get(section) or {}).items():
            psi = value(statistics, "psi")
            rows.append(
                DriftRow(
                    kind=kind,
                    name=name,
                    psi=psi,
                    ks_statistic=value(statistics, "ks_statistic"),
                    ks_pvalue=value(statistics, "ks_pvalue"),
                    wasserstein=value(statistics, "wasserstein"),
                    chi2_pvalue=value(statistics, "chi2_pvalue"),
                    alert=psi is not None and psi >= psi_alert,
                )
            )
    return sorted(rows, key=lambda r: (r.psi is None, -(r.psi or 0.0), r.kind, r.name))


@dataclass
class MonitoringOverview:
    """Everything the monitoring page and the API's overview show for one project."""

    plan: MonitoringPlan | None
    gate: Gate
    batches: list[MonitoringBatch] = field(default_factory=list)  # newest first
    latest: MonitoringBatch | None = None  # the newest analysed batch
    drift_rows: list[DriftRow] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    open_incidents: int = 0
    open_alerts: int = 0
    review_due_at: datetime.datetime | None = None
    review_overdue: bool = False
    next_batch_due: datetime.date | None = None

    @property
    def deployed(self) -> bool:
        return self.gate.state != GateState.LOCKED


def _next_batch_due(plan: MonitoringPlan, batches: list[MonitoringBatch]) -> datetime.date:
    """The first period without a batch: monitoring expects one batch per period."""
    covered = {batch.period_start for batch in batches}
    start, step = plan.starts_on, datetime.timedelta(days=plan.period_days)
    while start in covered:
        start += step
    return start


def monitoring_overview(project: Project) -> MonitoringOverview:
    """The plan, batches (newest first, with run and signals), the latest analysed batch's
    drift worst first, the trends, incidents (open first) and the review dates. A fixed
    number of queries, however many batches."""
    gate = monitoring_gate(project)
    plan = monitoring_plan_of(project)
    incidents = list(incident_list(project))
    open_incidents = [i for i in incidents if i.is_open]
    overview = MonitoringOverview(
        plan=plan,
        gate=gate,
        incidents=incidents,
        open_incidents=len(open_incidents),
        open_alerts=sum(1 for i in open_incidents if i.source == IncidentSource.ALERT),
    )
    if plan is None:
        return overview
    overview.batches = list(
        MonitoringBatch.objects.filter(project=project)
        .select_related("run", "submitted_by")
        .prefetch_related(Prefetch("signals", queryset=MonitoringSignal.objects.order_by("id")))
        .order_by("-period_start")
    )
    overview.latest = next((b for b in overview.batches if b.status == BatchStatus.ANALYSED), None)
    if overview.latest is not None:
        overview.drift_rows = drift_rows(overview.latest.drift, plan.psi_alert)
    overview.trends = plan_trends(plan)
    overview.review_due_at = review_due(plan, gate)
    overview.review_overdue = (
        gate.state != GateState.LOCKED and overview.review_due_at <= timezone.now()
    )
    overview.next_batch_due = _next_batch_due(plan, overview.batches)
    return overview


def incident_list(project: Project) -> QuerySet[Incident]:
    """The project's incidents, open ones first, newest first within each."""
    return (
        Incident.objects.filter(project=project)
        .select_related("owner", "reported_by", "batch")
        .annotate(
            closed=Case(
                When(status__in=OPEN_INCIDENT_STATUSES, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("closed", "-opened_at", "-id")
    )


def incident_get(project: Project, number: int) -> Incident:
    """Incident `number` of the project; Incident.DoesNotExist when there is none."""
    return (
        Incident.objects.filter(project=project, number=number)
        .select_related("owner", "reported_by", "batch", "project")
        .get()
    )


def incident_timeline(incident: Incident) -> list[IncidentEvent]:
    return list(incident.events.select_related("actor").order_by("at", "id"))


@dataclass(frozen=True)
class MonitoringFlags:
    """What the dashboard says about a project's monitoring."""

    open_alerts: int = 0
    open_incidents: int = 0
    review_due_at: datetime.datetime | None = None
    review_overdue: bool = False

    @property
    def attention(self) -> bool:
        return bool(self.open_alerts or self.review_overdue)


def _deployed() -> Exists:
    """The plan's project has passed deployment: its monitoring gate is unlocked."""
    return Exists(
        Gate.objects.filter(project=OuterRef("project"), phase=Phase.MONITORING).exclude(
            state=GateState.LOCKED
        )
    )


def overdue_reviews(now: datetime.datetime | None = None) -> QuerySet[MonitoringPlan]:
    """The plans whose periodic review is overdue: due (`review_due_at`, kept in step by the
    plan, the gate's approval and the scheduled check) and the project deployed. The one rule
    the monitoring page, the dashboard and the scheduled check share."""
    return MonitoringPlan.objects.filter(_deployed(), review_due_at__lte=now or timezone.now())


def needs_attention() -> "ExpressionWrapper[Any]":
    """For a Project queryset: true when the project has an open incident raised by an alert
    rule or an overdue periodic review (`MonitoringFlags.attention` as SQL, for ordering)."""
    alerts = Incident.objects.filter(
        project=OuterRef("pk"), source=IncidentSource.ALERT, status__in=OPEN_INCIDENT_STATUSES
    )
    overdue = overdue_reviews().filter(project=OuterRef("pk"))
    return ExpressionWrapper(Exists(alerts) | Exists(overdue), output_field=BooleanField())


def monitoring_flags(project_ids: Iterable[int]) -> dict[int, MonitoringFlags]:
    """The monitoring flags of each project that has any, in two queries: open incidents
    (and those raised by alerts) and the plans' review dates."""
    ids = list(project_ids)
    counts = {
        row["project"]: row
        for row in Incident.objects.filter(project__in=ids, status__in=OPEN_INCIDENT_STATUSES)
        .values("project")
        .annotate(
            total=Count("id"),
            alerts=Count("id", filter=Q(source=IncidentSource.ALERT)),
        )
    }
    now = timezone.now()
    plans = {
        project: (due, deployed and due is not None and due <= now)
        for project, due, deployed in MonitoringPlan.objects.filter(project__in=ids)
        .annotate(deployed=_deployed())
        .values_list("project", "review_due_at", "deployed")
    }
    flags = {}
    for project in set(counts) | set(plans):
        row = counts.get(project, {})
        due, overdue = plans.get(project, (None, False))
        flags[project] = MonitoringFlags(
            open_alerts=row.get("alerts", 0),
            open_incidents=row.get("total", 0),
            review_due_at=due,
            review_overdue=overdue,
        )
    return flags
