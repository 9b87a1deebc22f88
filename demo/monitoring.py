"""The demo's monitoring after go-live: a plan, twelve weekly batches, what the rules make of
them, and the people who respond.

Everything goes through the monitoring services, as a deployed model's feed would: the chair
saves the plan and the monitoring gate's criteria, the data steward sends one batch a week,
and each batch is evaluated and analysed in-process straight away (whatever the broker: the
demo needs the results at once), so the alerts, incidents and the reopened gate are the real
rules' verdicts on the synthetic records of `demo.records`, not rows written by hand.

The twelve periods end last week, counted back from the day the demo is loaded, so the
monitoring page always looks current.
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from governance.models import Project, User
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import CriterionScope
from lifecycle.monitoring import services as monitoring_services
from lifecycle.monitoring.models import MonitoringBatch, MonitoringPlan
from lifecycle.monitoring.selectors import baseline_candidates
from lifecycle.monitoring.tasks import analyse_monitoring_batch
from lifecycle.phases import Phase

# A criterion as the demo writes it: ("worst_group:auroc(age_band)", bound, comparator,
# threshold), the scope prefix and the group attribute optional (`GateCriterion.expression`).
CriterionSpec = tuple[str, str, str, float]


@dataclass(frozen=True)
class FeedbackSpec:
    """A clinician's or patient's feedback sent in the week it is about."""

    week: int
    source: str
    category: str
    rating: int | None
    text: str
    record_reference: str


@dataclass(frozen=True)
class TriageSpec:
    """What the clinical safety officer does with the incident a week's alert opened."""

    week: int
    status: str
    note: str


@dataclass(frozen=True)
class MonitoringSpec:
    """What the committee watches on a deployed demo project and the weeks it receives."""

    baseline_phase: Phase
    metrics: list[str]
    cohorts: list[str]
    criteria: list[CriterionSpec]
    records: Callable[[int], bytes]  # week number (1, 2, …) -> that week's JSON Lines
    weeks: int = 12
    period_days: int = 7
    review_interval_days: int = 90
    resamples: int = 200
    # Some thirty trends (metrics x cohorts) are watched per plan, each batch compared with one
    # finite baseline: the committee widens the CUSUM's decision interval from the textbook 4
    # to 5 standard errors so that quiet weeks stay quiet.
    cusum_h: float = 5.0
    # The monitoring gate is approved on the evidence of the first weeks, after this week's
    # batch (None: the gate stays open, the project approved through deployment only).
    approve_after_week: int | None = None
    feedback: list[FeedbackSpec] = field(default_factory=list)
    triage: list[TriageSpec] = field(default_factory=list)


def period_starts(weeks: int, period_days: int, today: datetime.date) -> list[datetime.date]:
    """The first days of `weeks` consecutive periods, the last one ending before the week of
    `today` (periods start on Mondays)."""
    this_week = today - datetime.timedelta(days=today.weekday())
    first = this_week - datetime.timedelta(days=weeks * period_days)
    return [first + datetime.timedelta(days=index * period_days) for index in range(weeks)]


def start_monitoring(
    project: Project, spec: MonitoringSpec, users: dict[str, User]
) -> MonitoringPlan:
    """The committee chair sets the monitoring gate's criteria and saves the plan, with the
    approved evidence of the baseline phase's gate as the baseline."""
    chair = users["chair"]
    gate = project.gates.get(phase=Phase.MONITORING)
    for target, bound, comparator, threshold in spec.criteria:
        gate_services.gate_criterion_create(
            actor=chair,
            gate=gate,
            required=True,
            **_criterion_fields(target),
            bound=bound,
            comparator=comparator,
            threshold=threshold,
        )
    baseline = next(
        run for run in baseline_candidates(project) if run.gate.phase == spec.baseline_phase
    )
    starts = period_starts(spec.weeks, spec.period_days, timezone.localdate())
    return monitoring_services.monitoring_plan_save(
        actor=chair,
        project=project,
        baseline_run=baseline,
        metrics=spec.metrics,
        cohorts=spec.cohorts,
        starts_on=starts[0],
        period_days=spec.period_days,
        review_interval_days=spec.review_interval_days,
        resamples=spec.resamples,
        cusum_h=spec.cusum_h,
    )


def _criterion_fields(target: str) -> dict[str, str]:
    """The scope, metric and group attribute of a target like "worst_group:auroc(age_band)"."""
    scope, _, rest = target.rpartition(":")
    metric, _, attribute = rest.partition("(")
    return {
        "scope": scope or CriterionScope.OVERALL,
        "metric": metric,
        "group_attribute": attribute.rstrip(")"),
    }


def send_batches(
    project: Project,
    plan: MonitoringPlan,
    spec: MonitoringSpec,
    users: dict[str, User],
    weeks: range,
) -> list[MonitoringBatch]:
    """The data steward sends the batches of `weeks` (1-based), each evaluated and analysed
    before the next; the week's feedback and the safety officer's triage follow its batch."""
    sent = []
    for week in weeks:
        # The plan's periods, from the day it was saved with (even across midnight).
        period_start = plan.starts_on + datetime.timedelta(days=(week - 1) * plan.period_days)
        sent.append(_send(project, period_start, spec.records(week), users["steward"]))
        for feedback in (f for f in spec.feedback if f.week == week):
            monitoring_services.feedback_submit(
                actor=users["clinician"],
                project=project,
                source=feedback.source,
                category=feedback.category,
                rating=feedback.rating,
                text=feedback.text,
                record_reference=feedback.record_reference,
            )
        for triage in (t for t in spec.triage if t.week == week):
            incident = sent[-1].incidents.order_by("number").first()
            if incident is None:
                raise RuntimeError(f"Week {week}'s batch raised no alert for the triage.")
            monitoring_services.incident_update(
                actor=users["safety"], incident=incident, status=triage.status, note=triage.note
            )
    return sent


def _send(
    project: Project, period_start: datetime.date, records: bytes, steward: User
) -> MonitoringBatch:
    batch = monitoring_services.monitoring_batch_submit(
        actor=steward,
        project=project,
        upload=SimpleUploadedFile(f"{project.slug}-{period_start:%Y-%m-%d}.jsonl", records),
        period_start=period_start,
    )
    # In-process whatever the broker, like the demo's other evaluations: with no broker these
    # already ran when the submission committed, and a second call finds nothing to do.
    run_evaluation.apply(args=(batch.run_id,))
    analyse_monitoring_batch.apply(args=(batch.run_id,))
    batch.refresh_from_db()
    return batch
