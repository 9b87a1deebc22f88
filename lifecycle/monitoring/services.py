"""Writes about monitoring: the plan, the batches and their analysis, incidents and feedback,
and the scheduled checks.

User actions take the acting user, check permission, change the data and write the audit event
in one transaction. The analysis of a batch and the scheduled checks are system steps recorded
as such; they claim their rows with conditional updates, so a redelivered or duplicated job
changes nothing. A serious incident, or a required criterion failing on a batch, reopens the
monitoring gate through `gate_monitoring_reopen` (docs/monitoring.md).
"""

import datetime
import uuid
from dataclasses import dataclass, replace
from typing import Any, Final

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from audits.models import Action
from audits.trail import changed, record, snapshot
from governance.models import Membership, Project, User
from governance.permissions import require_project_perm
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import (
    DatasetPurpose,
    DatasetVersion,
    EvaluationRun,
    ModelVersion,
    RunStatus,
)
from lifecycle.gates.criteria import FAIL
from lifecycle.gates.models import Gate, GateCriterion
from lifecycle.gates.readiness import run_verdicts
from lifecycle.gates.services import gate_monitoring_reopen
from lifecycle.metrics import METRICS
from lifecycle.monitoring.models import (
    OPEN_INCIDENT_STATUSES,
    BatchStatus,
    Feedback,
    FeedbackCategory,
    FeedbackSource,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentSource,
    IncidentStatus,
    MonitoringBatch,
    MonitoringPlan,
    MonitoringSignal,
    ScheduledJob,
    Severity,
    SignalRule,
)
from lifecycle.monitoring.selectors import (
    baseline_candidates,
    baseline_result_keys,
    monitoring_gate,
    review_due,
)
from lifecycle.monitoring.trends import plan_trends
from lifecycle.uploads import hash_upload

ANALYSE_BATCH_TASK = evaluation_services.ANALYSE_MONITORING_BATCH_TASK

PLAN_FIELDS = (
    "baseline_run",
    "metrics",
    "cohorts",
    "starts_on",
    "period_days",
    "review_interval_days",
    "resamples",
    "cusum_k",
    "cusum_h",
    "psi_alert",
)
INCIDENT_FIELDS = ("status", "severity", "owner", "resolution")
MAX_TEXT = 10_000  # characters of an incident description, note, resolution or feedback text


class _Unset:
    """The owner was not given (None means: no owner)."""


UNSET: Final = _Unset()


def _refuse_nul(**texts: str) -> None:
    for field, text in texts.items():
        if "\x00" in text:
            raise ValidationError({field: "The text contains a NUL character."})
        if len(text) > MAX_TEXT:
            raise ValidationError({field: f"At most {MAX_TEXT:,} characters."})


# --- The plan -----------------------------------------------------------------------------------


@transaction.atomic
def monitoring_plan_save(
    *,
    actor: User,
    project: Project,
    baseline_run: EvaluationRun,
    metrics: list[str],
    cohorts: list[str],
    starts_on: datetime.date,
    period_days: int = 7,
    review_interval_days: int = 90,
    resamples: int = 500,
    cusum_k: float = 0.5,
    cusum_h: float = 5.0,
    psi_alert: float = 0.25,
) -> MonitoringPlan:
    """Create or change the project's monitoring plan (the roles that set gate criteria).

    The baseline must be the approved evidence of the development or deployment gate; the
    watched metrics and cohorts must be ones the baseline measured, so every batch has
    something to be compared with.
    """
    require_project_perm(actor, "set_criteria", project)
    Project.objects.select_for_update().filter(pk=project.pk).first()
    candidates = {run.pk: run for run in baseline_candidates(project)}
    if baseline_run.pk not in candidates:
        listed = ", ".join(f"run {run.number}" for run in candidates.values())
        raise ValidationError(
            {
                "baseline_run": f"Run {baseline_run.number} is not the approved evidence of the "
                "development or deployment gate"
                + (f"; choose one of: {listed}." if listed else "; approve one of them first.")
            }
        )
    metrics = list(dict.fromkeys(m.strip() for m in metrics if m.strip()))
    cohorts = list(dict.fromkeys(c.strip() for c in cohorts if c.strip()))
    if not metrics:
        raise ValidationError({"metrics": "Choose at least one metric to watch."})
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValidationError({"metrics": f"Unknown metric(s): {', '.join(unknown)}."})
    measured_metrics, measured_cohorts = baseline_result_keys(baseline_run)
    unmeasured = [m for m in metrics if m not in measured_metrics]
    if unmeasured:
        raise ValidationError(
            {
                "metrics": f"The baseline run {baseline_run.number} has no value for "
                f"{', '.join(unmeasured)}: watch metrics the baseline measured "
                f"({', '.join(sorted(measured_metrics)) or 'none'})."
            }
        )
    unmeasured = [c for c in cohorts if c not in measured_cohorts]
    if unmeasured:
        raise ValidationError(
            {
                "cohorts": f"The baseline run {baseline_run.number} has no subgroups by "
                f"{', '.join(unmeasured)} (it has: "
                f"{', '.join(sorted(measured_cohorts)) or 'none'})."
            }
        )
    today = timezone.localdate()
    earliest, latest = (
        today - datetime.timedelta(days=3 * 366),
        today + datetime.timedelta(days=366),
    )
    if not earliest <= starts_on <= latest:
        raise ValidationError(
            {
                "starts_on": f"Start monitoring between {earliest:%Y-%m-%d} and "
                f"{latest:%Y-%m-%d} (three years back, one ahead)."
            }
        )
    plan = MonitoringPlan.objects.select_for_update().filter(project=project).first()
    before = snapshot(plan, PLAN_FIELDS) if plan is not None else {}
    if plan is None:
        plan = MonitoringPlan(project=project, created_by=actor)
    plan.baseline_run = baseline_run
    plan.metrics, plan.cohorts, plan.starts_on = metrics, cohorts, starts_on
    plan.period_days, plan.review_interval_days = period_days, review_interval_days
    plan.resamples, plan.cusum_k, plan.cusum_h = resamples, cusum_k, cusum_h
    plan.psi_alert, plan.updated_by = psi_alert, actor
    plan.full_clean(exclude=["project", "created_by", "updated_by"])
    gate = monitoring_gate(project)
    if gate.decided_at is None:
        # No review decided yet: the first is due one interval after monitoring starts, as
        # the plan now says (a stored date would be the old plan's).
        plan.review_due_at = None
    plan.review_due_at = review_due(plan, gate)
    plan.save()
    old, new = changed(before, snapshot(plan, PLAN_FIELDS))
    record(
        actor=actor,
        action=Action.MONITORING_PLAN_SAVE,
        project=project,
        target=plan,
        before=old or None,
        after=new,
    )
    return plan


# --- Batches ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchUpload:
    """A monitoring batch that passed every check needing no lock (`monitoring_batch_check`),
    with its evaluation upload checked against the monitoring gate."""

    plan: MonitoringPlan
    gate: Gate
    period_start: datetime.date
    period_end: datetime.date
    evaluation: evaluation_services.EvaluationUpload
    n_records: int


def batch_metrics(plan: MonitoringPlan, gate: Gate) -> list[str]:
    """What a batch's run computes: the plan's metrics, and those the monitoring gate's
    criteria judge (a criterion on a metric nobody computes would never fail)."""
    judged = GateCriterion.objects.filter(gate=gate).values_list("metric", flat=True)
    return list(dict.fromkeys([*plan.metrics, *(m for m in judged if m in METRICS)]))


def dataset_label(period_start: datetime.date) -> str:
    """The dataset version a batch registers for its records."""
    return f"monitoring-{period_start:%Y-%m-%d}"


def _period_problem(plan: MonitoringPlan, period_start: datetime.date) -> str:
    if period_start < plan.starts_on:
        return f"Monitoring starts on {plan.starts_on:%Y-%m-%d}; this period starts before it."
    offset = (period_start - plan.starts_on).days % plan.period_days
    if offset:
        earlier = period_start - datetime.timedelta(days=offset)
        return (
            f"Periods are {plan.period_days} day(s) long from {plan.starts_on:%Y-%m-%d}: "
            f"{period_start:%Y-%m-%d} is inside the period that starts on {earlier:%Y-%m-%d}."
        )
    if period_start > timezone.localdate():
        return f"The period starting {period_start:%Y-%m-%d} has not begun yet."
    return ""


def _existing_batch_problem(project: Project, period_start: datetime.date) -> str:
    existing = MonitoringBatch.objects.filter(project=project, period_start=period_start).first()
    if existing is None:
        return ""
    return (
        f"Batch {existing.number} already covers the period starting {period_start:%Y-%m-%d}: "
        "one batch per period."
    )


def _require_batch_permissions(user: User, project: Project) -> None:
    require_project_perm(user, "upload_evaluation", project)
    require_project_perm(user, "manage_versions", project)


def monitoring_batch_check(
    *,
    user: User,
    project: Project,
    upload: UploadedFile,
    period_start: datetime.date,
    model_version: ModelVersion | None = None,
) -> BatchUpload:
    """Check that `user` may send this batch and that it is sound, writing nothing: the plan,
    the monitoring gate (open once the project is deployed), the period, and the whole file
    against the record contract for the plan's metrics (a refused file names its line and
    field). Runs outside every transaction, like `evaluation_upload_check`, which it uses."""
    _require_batch_permissions(user, project)
    plan = (
        MonitoringPlan.objects.filter(project=project)
        .select_related("baseline_run__model_version")
        .first()
    )
    if plan is None:
        raise ValidationError(
            {"plan": "This project has no monitoring plan yet: the committee sets one first."}
        )
    gate = monitoring_gate(project)
    if gate.state == Gate.State.LOCKED:
        raise ValidationError(
            {
                "gate": "The project is not deployed yet: the monitoring gate opens when the "
                "deployment gate is approved."
            }
        )
    problem = _period_problem(plan, period_start) or _existing_batch_problem(project, period_start)
    if problem:
        raise ValidationError({"period_start": problem})
    model_version = model_version or plan.baseline_run.model_version
    if model_version.project_id != project.pk:
        raise ValidationError({"model_version": f"“{model_version}” is not of this project."})
    if "\x00" in (upload.name or ""):
        raise ValidationError({"file": "The file name contains a NUL character."})
    name, _, digest = hash_upload(
        upload, "file", settings.EVALUATION_MAX_BYTES, "EVALUATION_MAX_BYTES"
    )
    task = project.task_category
    metrics = batch_metrics(plan, gate)
    records = evaluation_services.read_records(upload, name, task, metrics)
    dataset_version = DatasetVersion(
        project=project,
        label=dataset_label(period_start),
        purpose=DatasetPurpose.MONITORING,
        row_count=records.n,
        sha256=digest,
    )
    evaluation = evaluation_services.evaluation_upload_check(
        user=user,
        gate=gate,
        model_version=model_version,
        dataset_version=dataset_version,
        upload=upload,
        task=task,
        metrics=metrics,
        resamples=plan.resamples,
        check_records=False,
    )
    warnings = evaluation_services.fit_warnings(gate, records, task, metrics)
    evaluation = replace(evaluation, n_records=records.n, warnings=tuple(warnings))
    return BatchUpload(
        plan=plan,
        gate=gate,
        period_start=period_start,
        period_end=period_start + datetime.timedelta(days=plan.period_days - 1),
        evaluation=evaluation,
        n_records=records.n,
    )


def monitoring_batch_submit(
    *,
    actor: User,
    project: Project,
    upload: UploadedFile,
    period_start: datetime.date,
    model_version: ModelVersion | None = None,
    checked: BatchUpload | None = None,
) -> MonitoringBatch:
    """Receive one period's monitoring records: register them as a monitoring dataset version,
    start their evaluation on the monitoring gate with the plan's metrics, and create the
    batch. The evaluation job scores it; when it succeeds, the analysis job compares it with
    the baseline (`monitoring_batch_record_analysis`)."""
    if checked is None:
        checked = monitoring_batch_check(
            user=actor,
            project=project,
            upload=upload,
            period_start=period_start,
            model_version=model_version,
        )
    elif checked.evaluation.upload is not upload or checked.period_start != period_start:
        raise ValueError("`checked` is the check of another upload")
    with transaction.atomic():
        # One batch number and one batch per period, however many uploads race.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        _require_batch_permissions(actor, project)
        problem = _existing_batch_problem(project, period_start)
        if problem:
            raise ValidationError({"period_start": problem})
        evaluation = checked.evaluation
        try:
            dataset_version = evaluation_services.dataset_version_create(
                actor=actor,
                project=project,
                label=dataset_label(period_start),
                purpose=DatasetPurpose.MONITORING,
                row_count=checked.n_records,
                sha256=evaluation.sha256,
                description=f"Monitoring records of {period_start:%Y-%m-%d} to "
                f"{checked.period_end:%Y-%m-%d}.",
            )
        except ValidationError as exc:
            if "label" in getattr(exc, "error_dict", {}):
                raise ValidationError(
                    {
                        "period_start": f"A dataset version is already called "
                        f"“{dataset_label(period_start)}”: rename it, or send this batch "
                        "for another period."
                    }
                ) from None
            raise
        run = evaluation_services.evaluation_run_start(
            actor=actor,
            gate=checked.gate,
            model_version=evaluation.model_version,
            dataset_version=dataset_version,
            upload=upload,
            checked=replace(evaluation, dataset_version=dataset_version),
        )
        last = MonitoringBatch.objects.filter(project=project).aggregate(last=Max("number"))
        batch = MonitoringBatch.objects.create(
            project=project,
            number=(last["last"] or 0) + 1,
            period_start=period_start,
            period_end=checked.period_end,
            run=run,
            submitted_by=actor,
        )
        record(
            actor=actor,
            action=Action.MONITORING_BATCH_SUBMIT,
            project=project,
            target=batch,
            after={
                "period_start": period_start.isoformat(),
                "period_end": checked.period_end.isoformat(),
                "run": run.number,
                "file": evaluation.name,
                "sha256": evaluation.sha256,
                "n_records": checked.n_records,
                **({"warnings": list(evaluation.warnings)} if evaluation.warnings else {}),
            },
        )
    return batch


def enqueue_analysis(run_id: int) -> None:
    """Queue the analysis of the batch whose evaluation run is `run_id`, after commit."""
    job = current_app.signature(ANALYSE_BATCH_TASK, args=(run_id,))
    transaction.on_commit(job.delay)


def monitoring_batch_claim(*, run_id: int, stale_before: datetime.datetime) -> uuid.UUID | None:
    """Claim the analysis of the batch whose run is `run_id` with one conditional update: its
    run succeeded and nobody analyses it (or its analyser went silent before `stale_before`).
    None when there is nothing to do."""
    token = uuid.uuid4()
    claimable = Q(status=BatchStatus.EVALUATING, run__status=RunStatus.SUCCEEDED) | Q(
        status=BatchStatus.ANALYSING, claimed_at__lt=stale_before
    )
    claimed = MonitoringBatch.objects.filter(claimable, run_id=run_id).update(
        status=BatchStatus.ANALYSING,
        claim_token=token,
        claimed_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    return token if claimed else None


def _signal_rows(
    plan: MonitoringPlan, batch: MonitoringBatch, drift: dict[str, Any]
) -> list[MonitoringSignal]:
    """The signals of `batch`: each trend's last point when it is this batch's (CUSUM past its
    interval, an interval wholly beyond a criterion threshold), and each field or group
    attribute whose PSI reached the plan's level."""
    found: dict[tuple[str, str, str, str, str], MonitoringSignal] = {}

    def add(signal: MonitoringSignal) -> None:
        key = (signal.rule, signal.metric, signal.scope, signal.group_attribute,
               signal.group_value)  # fmt: skip
        if key in found:  # two criteria on one trend: one signal, both reasons
            found[key].message += " " + signal.message
            found[key].required |= signal.required
        else:
            found[key] = signal

    for trend in plan_trends(plan, through=batch):
        if not trend.points or trend.points[-1].batch != batch.number:
            continue
        point = trend.points[-1]
        observed, base = point.observation, trend.baseline
        common = {
            "batch": batch,
            "metric": trend.metric,
            "scope": trend.scope,
            "group_attribute": trend.group_attribute,
            "group_value": trend.group_value,
            "value": observed.value,
        }
        for name in point.signals:
            if name.startswith("cusum"):
                side, total = (
                    ("above", point.cusum_high)
                    if name == "cusum_up"
                    else ("below", point.cusum_low)
                )
                add(
                    MonitoringSignal(
                        rule=SignalRule.CUSUM,
                        limit=plan.cusum_h,
                        message=f"{trend.label}: the CUSUM of batches {side} the baseline "
                        f"reached {total:.2f} standard errors (h = {plan.cusum_h:g}); batch "
                        f"value {_number(observed.value)} against baseline "
                        f"{_number(base.value)}.",
                        **common,
                    )
                )
            elif name.startswith("threshold:"):
                expression = name.removeprefix("threshold:")
                criterion = next((c for c in trend.criteria if c.expression == expression), None)
                add(
                    MonitoringSignal(
                        rule=SignalRule.THRESHOLD,
                        limit=criterion.threshold if criterion else None,
                        required=bool(criterion and criterion.required),
                        message=f"{trend.label}: the batch's 95% interval "
                        f"{_number(observed.ci_low)}–{_number(observed.ci_high)} lies wholly "
                        f"beyond the criterion {expression}.",
                        **common,
                    )
                )
    for kind, section in (("field", "fields"), ("group", "groups")):
        for name, statistics in sorted((drift.get(section) or {}).items()):
            psi = (statistics.get("psi") or {}).get("value")
            if psi is not None and psi >= plan.psi_alert:
                add(
                    MonitoringSignal(
                        batch=batch,
                        rule=SignalRule.DRIFT,
                        metric=name,
                        scope=kind,
                        value=psi,
                        limit=plan.psi_alert,
                        message=f"The {'field' if kind == 'field' else 'group attribute'} "
                        f"{name} shifted: PSI {psi:.3f} against the baseline (alert at "
                        f"{plan.psi_alert:g}).",
                    )
                )
    return list(found.values())


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _default_owner(project: Project) -> User | None:
    """The project's clinical safety officer (the first, when several): who triages alerts."""
    membership = (
        Membership.objects.filter(project=project, role=Role.CLINICAL_SAFETY_OFFICER)
        .select_related("user")
        .order_by("user_id")
        .first()
    )
    return membership.user if membership is not None else None


def _next_incident_number(project: Project) -> int:
    last = Incident.objects.filter(project=project).aggregate(last=Max("number"))["last"]
    return (last or 0) + 1


def _open_incident(
    *,
    actor: User | None,
    project: Project,
    title: str,
    description: str,
    source: str,
    severity: str,
    owner: User | None,
    batch: MonitoringBatch | None = None,
) -> Incident:
    """Create an incident with its first timeline entry and audit event (caller's
    transaction, project row locked by the caller)."""
    incident = Incident.objects.create(
        project=project,
        number=_next_incident_number(project),
        title=title[:200],
        description=description,
        source=source,
        severity=severity,
        owner=owner,
        batch=batch,
        reported_by=actor,
    )
    IncidentEvent.objects.create(
        incident=incident,
        kind=IncidentEventKind.OPENED,
        text=description,
        actor=actor,
        changes={"severity": [None, severity], "status": [None, IncidentStatus.OPEN]},
    )
    record(
        actor=actor,
        action=Action.INCIDENT_OPEN,
        project=project,
        target=incident,
        target_text=f"Incident {incident.number}",
        after={
            "number": incident.number,
            "title": incident.title,
            "source": source,
            "severity": severity,
            "owner": owner.get_username() if owner else None,
            **({"batch": batch.number} if batch is not None else {}),
        },
    )
    return incident


def _reopen_gate(
    project: Project, actor: User | None, cause: str, incidents: list[Incident]
) -> None:
    if gate_monitoring_reopen(by=actor, gate=monitoring_gate(project), cause=cause):
        IncidentEvent.objects.bulk_create(
            IncidentEvent(
                incident=incident,
                kind=IncidentEventKind.GATE_REOPENED,
                text=f"The monitoring gate was reopened: {cause}",
                actor=actor,
            )
            for incident in incidents
        )


def monitoring_batch_record_analysis(
    *, run_id: int, token: uuid.UUID, drift: dict[str, Any]
) -> bool:
    """Store a batch's drift, raise its signals, open or join incidents, and reopen the
    monitoring gate when a required criterion fails on the batch or a serious incident was
    opened: all in one transaction, and only while this job holds the batch (False
    otherwise: a redelivered job stores nothing).

    Signals that continue an open alert incident's (same rule, metric and cohort) join it on
    its timeline; the others open one incident for the batch, serious when a required
    criterion's threshold is breached, moderate otherwise, owned by the clinical safety
    officer.
    """
    with transaction.atomic():
        batch = (
            MonitoringBatch.objects.select_for_update()
            .filter(run_id=run_id, claim_token=token, status=BatchStatus.ANALYSING)
            .first()
        )
        if batch is None:
            return False
        project = batch.project
        Project.objects.select_for_update().filter(pk=project.pk).first()
        plan = MonitoringPlan.objects.select_related("baseline_run").get(project=project)
        run = EvaluationRun.objects.select_related("gate", "model_version").get(pk=run_id)
        batch.drift = drift
        signals = _signal_rows(plan, batch, drift)
        # One open alert incident collects the alerts until it is resolved: a drift that
        # spreads from one cohort to others over the weeks is one investigation, not several.
        incident = (
            Incident.objects.select_for_update()
            .filter(
                project=project,
                source=IncidentSource.ALERT,
                status__in=OPEN_INCIDENT_STATUSES,
            )
            .order_by("-opened_at", "-id")
            .first()
        )
        opened = escalated = False
        if signals and incident is None:
            first, more = signals[0], len(signals) - 1
            incident = _open_incident(
                actor=None,
                project=project,
                title=f"Batch {batch.number} alert: {first.message.split(':')[0]}"
                + (f" and {more} more" if more else ""),
                description="\n".join(s.message for s in signals),
                source=IncidentSource.ALERT,
                severity=Severity.SERIOUS
                if any(s.required for s in signals)
                else Severity.MODERATE,
                owner=_default_owner(project),
                batch=batch,
            )
            opened = True
        elif signals and incident is not None:
            IncidentEvent.objects.create(
                incident=incident,
                kind=IncidentEventKind.SIGNAL,
                text=f"Batch {batch.number} ({batch.period_start:%Y-%m-%d}): "
                + " ".join(s.message for s in signals),
            )
            if any(s.required for s in signals) and not incident.is_serious:
                # A required criterion's threshold is now breached: the incident is serious.
                IncidentEvent.objects.create(
                    incident=incident,
                    kind=IncidentEventKind.CHANGED,
                    text=f"Raised to serious: batch {batch.number} breaches a required "
                    "criterion's threshold.",
                    changes={"severity": [incident.severity, Severity.SERIOUS]},
                )
                incident.severity = Severity.SERIOUS
                incident.save(update_fields=["severity", "updated_at"])
                escalated = True
        for signal in signals:
            signal.incident = incident
        MonitoringSignal.objects.bulk_create(signals)
        failing = [v for v in run_verdicts(run) if v.criterion.required and v.status == FAIL]
        batch.status, batch.analysed_at = BatchStatus.ANALYSED, timezone.now()
        batch.error_message = ""
        batch.save(update_fields=["drift", "status", "analysed_at", "error_message"])
        record(
            actor=None,
            action=Action.MONITORING_BATCH_ANALYSE,
            project=project,
            target=batch,
            after={
                "run": run.number,
                "signals": [s.message for s in signals],
                "drift_alerts": sorted(s.metric for s in signals if s.rule == SignalRule.DRIFT),
                "failing_required_criteria": [v.criterion.expression for v in failing],
                "incident": incident.number if incident and signals else None,
                "incident_opened": opened,
                **({"incident_raised_to": Severity.SERIOUS} if escalated else {}),
            },
        )
        causes = []
        if failing:
            listed = "; ".join(f"{v.criterion.expression} ({v.detail})" for v in failing)
            causes.append(
                f"batch {batch.number} ({batch.period_start:%Y-%m-%d}) fails required "
                f"criteria: {listed}"
            )
        if incident is not None and (opened or escalated) and incident.is_serious:
            causes.append(f"serious incident {incident.number}: {incident.title}")
        if causes:
            told = [incident] if incident is not None and signals else []
            _reopen_gate(project, None, "; ".join(causes), told)
    return True


@transaction.atomic
def monitoring_batch_fail(*, run_id: int, token: uuid.UUID | None, message: str) -> bool:
    """Mark a batch failed: its evaluation failed, or its analysis could not be done."""
    batch = MonitoringBatch.objects.select_for_update().filter(run_id=run_id).first()
    if batch is None or batch.status in (BatchStatus.ANALYSED, BatchStatus.FAILED):
        return False
    if token is not None and batch.claim_token != token:
        return False
    batch.status, batch.error_message = BatchStatus.FAILED, message
    batch.save(update_fields=["status", "error_message"])
    record(
        actor=None,
        action=Action.MONITORING_BATCH_FAIL,
        project=batch.project,
        target=batch,
        after={"error": message},
    )
    return True


@transaction.atomic
def monitoring_batch_release(*, run_id: int, token: uuid.UUID) -> bool:
    """Give a claimed analysis back after a transient error, for the retry to claim it."""
    return bool(
        MonitoringBatch.objects.filter(
            run_id=run_id, claim_token=token, status=BatchStatus.ANALYSING
        ).update(status=BatchStatus.EVALUATING, claim_token=None)
    )


def monitoring_batch_fail_evaluated(*, run_id: int) -> bool:
    """Mark failed the batch whose evaluation run `run_id` failed (False when it did not, or
    the batch is settled already)."""
    error = (
        EvaluationRun.objects.filter(pk=run_id, status=RunStatus.FAILED)
        .values_list("error_message", flat=True)
        .first()
    )
    if error is None:
        return False
    return monitoring_batch_fail(run_id=run_id, token=None, message=f"Evaluation failed: {error}")


def monitoring_batches_settle(*, stale_before: datetime.datetime) -> dict[str, list[int]]:
    """What the scheduled sweep does for batches: fail those whose evaluation failed, and
    queue the analysis of those whose run succeeded but whose analysis never came (a lost
    message) or went silent. Returns the run ids of each."""
    failed = [
        run_id
        for run_id in MonitoringBatch.objects.filter(
            status__in=(BatchStatus.EVALUATING, BatchStatus.ANALYSING),
            run__status=RunStatus.FAILED,
        ).values_list("run_id", flat=True)
        if monitoring_batch_fail_evaluated(run_id=run_id)
    ]
    waiting = list(
        MonitoringBatch.objects.filter(
            Q(status=BatchStatus.EVALUATING, run__status=RunStatus.SUCCEEDED)
            | Q(status=BatchStatus.ANALYSING, claimed_at__lt=stale_before)
        ).values_list("run_id", flat=True)
    )
    for run_id in waiting:
        with transaction.atomic():
            enqueue_analysis(run_id)
    return {"failed": failed, "queued": waiting}


# --- Periodic reviews and the schedule ----------------------------------------------------------


def monitoring_reviews_flag_overdue(*, now: datetime.datetime | None = None) -> list[int]:
    """Keep each plan's review due date in step with its monitoring gate (due one interval
    after the gate's last approval) and flag the reviews that became overdue, once each,
    with an audit event; clear the flag once a review is approved. Returns the project ids
    newly flagged."""
    now = now or timezone.now()
    flagged = []
    plans = MonitoringPlan.objects.select_related("project").order_by("pk")
    gates = {
        gate.project_id: gate
        for gate in Gate.objects.filter(
            project__in=[p.project_id for p in plans], phase="monitoring"
        )
    }
    for plan in plans:
        gate = gates.get(plan.project_id)
        if gate is None:
            continue
        due = review_due(plan, gate)
        with transaction.atomic():
            rows = MonitoringPlan.objects.filter(pk=plan.pk)
            if due != plan.review_due_at:
                rows.update(review_due_at=due)
            if due is None or due > now or gate.state == Gate.State.LOCKED:
                rows.filter(review_overdue_since__isnull=False).update(review_overdue_since=None)
                continue
            if rows.filter(review_overdue_since__isnull=True).update(review_overdue_since=now):
                record(
                    actor=None,
                    action=Action.MONITORING_REVIEW_OVERDUE,
                    project=plan.project,
                    target=plan,
                    after={
                        "review_due_at": due.isoformat(),
                        "gate_state": gate.state,
                        "cycle": gate.cycle,
                    },
                )
                flagged.append(plan.project_id)
    return flagged


def scheduled_job_claim(
    name: str, *, interval: datetime.timedelta, now: datetime.datetime | None = None
) -> bool:
    """Claim this run of the scheduled job `name`: True when it is due, and then no other
    delivery is until about one interval from now. Beat delivering late, twice, or in a burst
    after an outage runs the job once: a missed schedule catches up once, never twice."""
    now = now or timezone.now()
    ScheduledJob.objects.get_or_create(name=name, defaults={"next_due_at": now})
    # A little early counts as due: beat's own clock drifts against this one.
    return bool(
        ScheduledJob.objects.filter(name=name, next_due_at__lte=now).update(
            next_due_at=now + interval * 0.9, last_started_at=now, runs=F("runs") + 1
        )
    )


def scheduled_job_finished(name: str) -> None:
    ScheduledJob.objects.filter(name=name).update(last_finished_at=timezone.now())


# --- Incidents and feedback ---------------------------------------------------------------------


def _require_owner(project: Project, owner: User | None) -> None:
    if owner is None:
        return
    roles = set(
        Membership.objects.filter(project=project, user=owner).values_list("role", flat=True)
    )
    if not roles - {Role.AUDITOR}:
        raise ValidationError(
            {"owner": f"{owner.get_username()} is not a member of this project who can act."}
        )


def _choice(field: str, value: str, choices: Any) -> str:
    if value not in choices.values:
        raise ValidationError({field: f"“{value}” is not one of: {', '.join(choices.values)}."})
    return value


@transaction.atomic
def incident_report(
    *,
    actor: User,
    project: Project,
    title: str,
    description: str = "",
    severity: str = Severity.MODERATE,
    owner: User | None = None,
) -> Incident:
    """Report a clinical safety incident by hand (any member but the auditor). A serious or
    critical one reopens the monitoring gate."""
    require_project_perm(actor, "comment", project)
    title, description = title.strip(), description.strip()
    if not title:
        raise ValidationError({"title": "Say in a line what happened."})
    if len(title) > 200:
        raise ValidationError({"title": "At most 200 characters."})
    _refuse_nul(title=title, description=description)
    _choice("severity", severity, Severity)
    _require_owner(project, owner)
    Project.objects.select_for_update().filter(pk=project.pk).first()
    incident = _open_incident(
        actor=actor,
        project=project,
        title=title,
        description=description,
        source=IncidentSource.MANUAL,
        severity=severity,
        owner=owner,
    )
    if incident.is_serious:
        _reopen_gate(
            project,
            actor,
            f"{incident.get_severity_display().lower()} incident {incident.number} reported: "
            f"{incident.title}",
            [incident],
        )
    return incident


@transaction.atomic
def incident_update(
    *,
    actor: User,
    incident: Incident,
    status: str | None = None,
    severity: str | None = None,
    owner: User | _Unset | None = UNSET,
    resolution: str | None = None,
    note: str = "",
) -> Incident:
    """Triage an incident: its status, severity, owner and resolution, with an optional note
    on the timeline (who manages incidents: leads, clinical safety officers, the chair).
    Resolving needs a resolution; raising it to serious or critical reopens the monitoring
    gate."""
    incident = Incident.objects.select_for_update().select_related("project").get(pk=incident.pk)
    project = incident.project
    require_project_perm(actor, "manage_incidents", project)
    note = note.strip()
    _refuse_nul(note=note, resolution=resolution or "")
    before = snapshot(incident, INCIDENT_FIELDS)
    was_serious = incident.is_serious
    was_pressing = was_serious and incident.is_open
    if status is not None:
        incident.status = _choice("status", status, IncidentStatus)
    if severity is not None:
        incident.severity = _choice("severity", severity, Severity)
    if not isinstance(owner, _Unset):
        _require_owner(project, owner)
        incident.owner = owner
    if resolution is not None:
        incident.resolution = resolution.strip()
    if incident.status == IncidentStatus.RESOLVED:
        if not incident.resolution:
            raise ValidationError(
                {"resolution": "Say how the incident was resolved before resolving it."}
            )
        incident.resolved_at = incident.resolved_at or timezone.now()
    else:
        incident.resolved_at = None
    after = snapshot(incident, INCIDENT_FIELDS)
    old, new = changed(before, after)
    if not new and not note:
        raise ValidationError("Nothing to change: set a field or add a note.")
    incident.save()
    changes = {
        field: [_shown(field, old[field]), _shown(field, value)] for field, value in new.items()
    }
    IncidentEvent.objects.create(
        incident=incident,
        kind=IncidentEventKind.CHANGED if changes else IncidentEventKind.NOTE,
        text=note,
        changes=changes,
        actor=actor,
    )
    record(
        actor=actor,
        action=Action.INCIDENT_UPDATE if changes else Action.INCIDENT_NOTE,
        project=project,
        target=incident,
        target_text=f"Incident {incident.number}",
        before={field: pair[0] for field, pair in changes.items()} or None,
        after={field: pair[1] for field, pair in changes.items()} or None,
        reason=note,
    )
    # Serious and open now, and it was not: raised to serious, or a serious one reopened.
    if incident.is_serious and incident.is_open and not was_pressing:
        what = "raised to" if incident.is_serious and not was_serious else "reopened as"
        _reopen_gate(
            project,
            actor,
            f"incident {incident.number} {what} {incident.get_severity_display().lower()}: "
            f"{incident.title}",
            [incident],
        )
    return incident


def _shown(field: str, value: Any) -> Any:
    """A changed value as the timeline and the trail show it: the owner by username."""
    if field == "owner" and value is not None:
        return User.objects.get(pk=value).get_username()
    return value


@transaction.atomic
def incident_note_add(*, actor: User, incident: Incident, text: str) -> IncidentEvent:
    """Add a note to an incident's timeline (any member but the auditor)."""
    require_project_perm(actor, "comment", incident.project)
    text = text.strip()
    if not text:
        raise ValidationError({"text": "The note is empty."})
    _refuse_nul(text=text)
    event = IncidentEvent.objects.create(
        incident=incident, kind=IncidentEventKind.NOTE, text=text, actor=actor
    )
    record(
        actor=actor,
        action=Action.INCIDENT_NOTE,
        project=incident.project,
        target=incident,
        target_text=f"Incident {incident.number}",
        after={"note": text},
    )
    return event


# Feedback that opens an incident for the safety officer to triage.
def _feedback_needs_incident(category: str, rating: int | None) -> bool:
    return category == FeedbackCategory.SAFETY or rating == 1


@transaction.atomic
def feedback_submit(
    *,
    actor: User,
    project: Project,
    source: str,
    category: str,
    rating: int | None = None,
    text: str = "",
    record_reference: str = "",
) -> Feedback:
    """Receive a clinician's or patient's rating and comment on the deployed model (any
    member but the auditor; usually a feedback integration's API token). Safety feedback and
    the lowest rating open an incident (moderate, for the safety officer to triage)."""
    require_project_perm(actor, "comment", project)
    _choice("source", source, FeedbackSource)
    _choice("category", category, FeedbackCategory)
    if rating is not None and not 1 <= rating <= 5:
        raise ValidationError({"rating": "Rate from 1 (harmful or useless) to 5 (excellent)."})
    text, record_reference = text.strip(), record_reference.strip()
    _refuse_nul(text=text, record_reference=record_reference)
    if len(record_reference) > 200:
        raise ValidationError({"record_reference": "At most 200 characters."})
    Project.objects.select_for_update().filter(pk=project.pk).first()
    feedback = Feedback.objects.create(
        project=project,
        source=source,
        category=category,
        rating=rating,
        text=text,
        record_reference=record_reference,
        submitted_by=actor,
    )
    if _feedback_needs_incident(category, rating):
        label = f"{feedback.get_source_display()} feedback: {feedback.get_category_display()}"
        about = f" on {record_reference}" if record_reference else ""
        feedback.incident = _open_incident(
            actor=actor,
            project=project,
            title=f"{label}{about}",
            description=text,
            source=IncidentSource.FEEDBACK,
            severity=Severity.MODERATE,
            owner=_default_owner(project),
        )
        feedback.save(update_fields=["incident"])
        IncidentEvent.objects.create(
            incident=feedback.incident,
            kind=IncidentEventKind.FEEDBACK,
            text=f"Rating {rating if rating is not None else '—'}: {text}",
            actor=actor,
        )
    record(
        actor=actor,
        action=Action.FEEDBACK_RECEIVE,
        project=project,
        target=feedback,
        after={
            "source": source,
            "category": category,
            "rating": rating,
            "record_reference": record_reference,
            "incident": feedback.incident.number if feedback.incident else None,
        },
    )
    return feedback
