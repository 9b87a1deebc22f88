"""The monitoring services (issue 14): the plan, batches and their analysis, the alert rules
raising incidents and reopening the monitoring gate, incidents, feedback, overdue reviews and
the schedule that runs once per interval."""

import datetime
import json
import uuid

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.utils import timezone

from audits.models import Action, AuditEvent
from governance.roles import Role
from lifecycle.evaluations.models import EvaluationRun, RunStatus
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate, Signature
from lifecycle.gates.readiness import readiness_of
from lifecycle.monitoring import services
from lifecycle.monitoring.models import (
    BatchStatus,
    Incident,
    IncidentEventKind,
    MonitoringBatch,
    MonitoringSignal,
    ScheduledJob,
)
from lifecycle.monitoring.selectors import monitoring_flags, monitoring_overview
from lifecycle.monitoring.tasks import analyse_monitoring_batch, monitoring_sweep
from lifecycle.phases import Phase
from tests.factories import approve, settle
from tests.monitoring import BASELINE_ROWS, classifier_records, deploy, send_batch

pytestmark = pytest.mark.django_db

QUIET = {"weak_group": None}
SHIFTED = {"weak_group": "65+", "weakness": 1.6}


def records(week: int, n: int = 300, **shift) -> bytes:
    return classifier_records(seed=100 + week, n=n, **shift)


def actions(project, action: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(chain__project=project, action=action).order_by("sequence")
    )


@pytest.fixture
def plan(team):
    return deploy(team)


def monitoring_gate(team) -> Gate:
    return team.project.gates.get(phase=Phase.MONITORING)


def approve_monitoring(team, batch: MonitoringBatch) -> None:
    settle(team, Phase.MONITORING)
    gate = monitoring_gate(team)
    gate_services.gate_submit(actor=team.creator, gate=gate, evidence_runs=[batch.run])
    approve(team, monitoring_gate(team))
    assert monitoring_gate(team).state == Gate.State.APPROVED


# --- The plan ---


def test_the_plan_is_set_by_who_sets_criteria_on_an_approved_baseline(team, plan):
    assert plan.baseline_run.gate.phase == Phase.DEVELOPMENT
    event = actions(team.project, Action.MONITORING_PLAN_SAVE)[-1]
    assert event.after["metrics"] == [
        "auroc",
        "recall",
        "precision",
        "demographic_parity_difference",
    ]
    assert plan.review_due_at is not None
    with pytest.raises(PermissionDenied):
        services.monitoring_plan_save(
            actor=team.creator,
            project=team.project,
            baseline_run=plan.baseline_run,
            metrics=["auroc"],
            cohorts=[],
            starts_on=plan.starts_on,
        )


def test_the_plan_refuses_a_baseline_metric_or_cohort_it_cannot_compare_with(team, plan):
    chair = team[Role.COMMITTEE_CHAIR]
    save = dict(actor=chair, project=team.project, starts_on=plan.starts_on)
    batch = send_batch(team, plan, 0, records(0))
    with pytest.raises(ValidationError) as refused:
        services.monitoring_plan_save(baseline_run=batch.run, metrics=["auroc"], cohorts=[], **save)
    assert "not the approved evidence of the development or deployment gate" in str(refused.value)
    assert "choose one of: run 1" in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        services.monitoring_plan_save(
            baseline_run=plan.baseline_run, metrics=["bleu"], cohorts=[], **save
        )
    assert "has no value for bleu" in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        services.monitoring_plan_save(
            baseline_run=plan.baseline_run, metrics=["auroc"], cohorts=["payer"], **save
        )
    assert "no subgroups by payer (it has: age_band, sex)" in str(refused.value)
    # A change records only what changed.
    services.monitoring_plan_save(
        baseline_run=plan.baseline_run,
        metrics=plan.metrics,
        cohorts=plan.cohorts,
        period_days=7,
        review_interval_days=30,
        resamples=200,
        **save,
    )
    event = actions(team.project, Action.MONITORING_PLAN_SAVE)[-1]
    assert event.before == {"review_interval_days": 90}
    assert event.after == {"review_interval_days": 30}


# --- Batches ---


def test_a_batch_is_a_monitoring_run_on_the_monitoring_gate(team, plan):
    batch = send_batch(team, plan, 0, records(0))
    run = batch.run
    assert batch.number == 1
    assert batch.period_start == plan.starts_on
    assert batch.period_end == plan.starts_on + datetime.timedelta(days=6)
    assert run.gate.phase == Phase.MONITORING
    assert run.metrics == plan.metrics and run.resamples == plan.resamples
    assert run.dataset_version.label == f"monitoring-{plan.starts_on:%Y-%m-%d}"
    assert run.dataset_version.row_count == 300 and run.dataset_version.purpose == "monitoring"
    assert batch.status == BatchStatus.ANALYSED
    drift = batch.drift
    assert drift["n_baseline"] == BASELINE_ROWS and drift["n_current"] == 300
    assert set(drift["fields"]) == {"score", "latency_ms"}
    assert set(drift["groups"]) == {"age_band", "sex"}
    assert set(drift["fields"]["score"]) == {"psi", "ks_statistic", "ks_pvalue", "wasserstein"}
    [submitted] = actions(team.project, Action.MONITORING_BATCH_SUBMIT)
    assert submitted.after["run"] == run.number and submitted.after["n_records"] == 300
    [analysed] = actions(team.project, Action.MONITORING_BATCH_ANALYSE)
    assert analysed.actor_type == "system" and analysed.after["incident"] is None


@pytest.mark.parametrize(
    ("week", "message"),
    [
        (-1, "this period starts before it"),
        (0.5, "is inside the period that starts on"),
        (40, "has not begun yet"),
    ],
)
def test_a_batch_period_must_be_one_of_the_plan(team, plan, week, message):
    start = plan.starts_on + datetime.timedelta(days=int(7 * week))
    with pytest.raises(ValidationError) as refused:
        services.monitoring_batch_submit(
            actor=team[Role.DATA_STEWARD],
            project=team.project,
            upload=ContentFile(records(0), name="w.jsonl"),
            period_start=start,
        )
    assert message in str(refused.value.message_dict["period_start"])
    assert not MonitoringBatch.objects.exists()


def test_one_batch_per_period_and_a_refused_file_names_its_line(team, plan):
    send_batch(team, plan, 0, records(0))
    runs = EvaluationRun.objects.count()
    with pytest.raises(ValidationError) as refused:
        send_batch(team, plan, 0, records(1))
    assert "Batch 1 already covers the period" in str(refused.value)
    bad = records(1).replace(b'"score": ', b'"score": 7', 1)
    with pytest.raises(ValidationError) as refused:
        send_batch(team, plan, 1, bad)
    assert "line 1" in str(refused.value.message_dict["file"])
    assert EvaluationRun.objects.count() == runs and MonitoringBatch.objects.count() == 1


def test_batches_need_a_deployed_project_a_plan_and_the_uploading_roles(team):
    plan = deploy(team)
    upload = dict(project=team.project, period_start=plan.starts_on)
    with pytest.raises(PermissionDenied):
        services.monitoring_batch_submit(
            actor=team[Role.AUDITOR], upload=ContentFile(records(0), name="w.jsonl"), **upload
        )
    plan.delete()
    with pytest.raises(ValidationError) as refused:
        services.monitoring_batch_submit(
            actor=team.creator, upload=ContentFile(records(0), name="w.jsonl"), **upload
        )
    assert "no monitoring plan yet" in str(refused.value)


def test_the_analysis_runs_once_however_often_its_job_is_delivered(team, plan):
    batch = send_batch(team, plan, 0, records(0), analyse=False)
    assert batch.status == BatchStatus.EVALUATING
    stale = timezone.now() - datetime.timedelta(minutes=5)
    token = services.monitoring_batch_claim(run_id=batch.run_id, stale_before=stale)
    assert token is not None
    assert services.monitoring_batch_claim(run_id=batch.run_id, stale_before=stale) is None
    assert not services.monitoring_batch_record_analysis(
        run_id=batch.run_id, token=uuid.uuid4(), drift={}
    )
    assert services.monitoring_batch_record_analysis(run_id=batch.run_id, token=token, drift={})
    assert analyse_monitoring_batch.apply(args=[batch.run_id]).get().startswith("skipped")
    assert len(actions(team.project, Action.MONITORING_BATCH_ANALYSE)) == 1


# --- Alerts, incidents and the monitoring gate ---


def test_a_cohort_shift_raises_an_alert_an_incident_and_reopens_the_approved_gate(
    team, plan, settings, django_capture_on_commit_callbacks, in_process_tasks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    quiet = [send_batch(team, plan, week, records(week)) for week in range(3)]
    assert not MonitoringSignal.objects.filter(rule="threshold").exists()
    approve_monitoring(team, quiet[-1])
    standing = set(
        Signature.objects.filter(gate=monitoring_gate(team)).values_list("pk", flat=True)
    )
    with django_capture_on_commit_callbacks(execute=True):
        shifted = send_batch(team, plan, 3, records(3, n=400, **SHIFTED))
    threshold = shifted.signals.get(rule="threshold")
    assert threshold.group_attribute == "age_band" and threshold.group_value == "65+"
    assert threshold.required and threshold.metric == "auroc"
    assert (
        "lies wholly beyond the criterion each_group:auroc(age_band) >= 0.75" in threshold.message
    )
    incident = threshold.incident
    assert incident.source == "alert" and incident.severity == "serious"
    assert incident.owner == team[Role.CLINICAL_SAFETY_OFFICER]
    assert incident.batch == shifted
    kinds = list(incident.events.values_list("kind", flat=True))
    assert kinds == [IncidentEventKind.OPENED, IncidentEventKind.GATE_REOPENED]
    gate = monitoring_gate(team)
    assert gate.state == Gate.State.OPEN and gate.cycle == 2
    assert f"batch {shifted.number}" in gate.reopened_reason
    assert f"serious incident {incident.number}" in gate.reopened_reason
    assert not gate.items.filter(status="done").exists()
    # Every signature of the approved review stopped counting, superseded by the new review.
    assert not Signature.objects.filter(pk__in=standing, invalidation__isnull=True).exists()
    [reopened] = actions(team.project, Action.GATE_MONITORING_REOPEN)
    assert reopened.actor_type == "system" and reopened.before["state"] == "approved"
    told = {address for message in mail.outbox for address in message.to}
    assert team.creator.email in told and team[Role.COMMITTEE_CHAIR].email in told
    assert any("Monitoring reopened the Monitoring gate" in m.subject for m in mail.outbox)
    # The next batch's signals on the same trend join the open incident instead of a new one.
    following = send_batch(team, plan, 4, records(4, n=400, **SHIFTED))
    assert following.signals.get(rule="threshold").incident == incident
    assert incident.events.filter(kind=IncidentEventKind.SIGNAL).exists()
    flags = monitoring_flags([team.project.pk])[team.project.pk]
    assert flags.attention and flags.open_alerts >= 1


def test_the_rule_is_quiet_on_quiet_batches(team, plan):
    for week in range(6):
        send_batch(team, plan, week, records(week))
    assert not MonitoringSignal.objects.filter(rule="threshold").exists()
    assert not Incident.objects.filter(severity__in=["serious", "critical"]).exists()
    assert monitoring_gate(team).reopened_reason == ""
    overview = monitoring_overview(team.project)
    assert len(overview.batches) == 6 and overview.latest == overview.batches[0]
    assert overview.next_batch_due == plan.starts_on + datetime.timedelta(days=42)
    psi = [row.psi for row in overview.drift_rows if row.psi is not None]
    assert psi == sorted(psi, reverse=True)


def test_a_serious_safety_report_reopens_the_gate_and_triage_is_audited(team, plan):
    member = team[Role.CLINICAL_LEAD]
    with pytest.raises(PermissionDenied):
        services.incident_report(actor=team[Role.AUDITOR], project=team.project, title="x")
    with pytest.raises(ValidationError):
        services.incident_report(actor=member, project=team.project, title="a\x00b")
    incident = services.incident_report(
        actor=member,
        project=team.project,
        title="Summary omitted a penicillin allergy",
        description="Bed 12, caught by the pharmacist.",
        severity="serious",
    )
    assert incident.number == 1 and incident.source == "manual"
    gate = monitoring_gate(team)
    assert "serious incident 1 reported" in gate.reopened_reason
    officer = team[Role.CLINICAL_SAFETY_OFFICER]
    with pytest.raises(PermissionDenied):
        services.incident_update(actor=member, incident=incident, status="investigating")
    with pytest.raises(ValidationError) as refused:
        services.incident_update(actor=officer, incident=incident, status="resolved")
    assert "Say how the incident was resolved" in str(refused.value)
    with pytest.raises(ValidationError):
        services.incident_update(actor=officer, incident=incident, owner=team.outsider)
    services.incident_update(
        actor=officer, incident=incident, status="investigating", owner=officer, note="Taking it."
    )
    services.incident_note_add(actor=member, incident=incident, text="Pharmacy log attached.")
    incident = services.incident_update(
        actor=officer,
        incident=incident,
        status="resolved",
        resolution="Allergy section added to the prompt; 200 summaries re-checked.",
    )
    assert incident.resolved_at is not None
    timeline = list(incident.events.order_by("at", "id"))
    assert [e.kind for e in timeline] == ["opened", "gate_reopened", "changed", "note", "changed"]
    assert timeline[2].changes == {
        "status": ["open", "investigating"],
        "owner": [None, officer.get_username()],
    }
    assert timeline[2].text == "Taking it."
    updates = actions(team.project, Action.INCIDENT_UPDATE)
    assert [e.after.get("status") for e in updates] == ["investigating", "resolved"]
    assert len(actions(team.project, Action.INCIDENT_NOTE)) == 1


@pytest.mark.parametrize(
    ("category", "rating", "opens"),
    [("safety", 4, True), ("accuracy", 1, True), ("usability", 3, False), ("bias", None, False)],
)
def test_feedback_opens_an_incident_when_it_reports_harm(team, plan, category, rating, opens):
    feedback = services.feedback_submit(
        actor=team[Role.CLINICAL_LEAD],
        project=team.project,
        source="clinician",
        category=category,
        rating=rating,
        text="The summary <b>missed</b> lactate.",
        record_reference="enc-1234",
    )
    assert (feedback.incident is not None) == opens
    if opens:
        assert feedback.incident.source == "feedback"
        assert feedback.incident.title.endswith("on enc-1234")
        assert feedback.incident.events.filter(kind="feedback").exists()
    [event] = actions(team.project, Action.FEEDBACK_RECEIVE)
    assert event.after["incident"] == (feedback.incident.number if opens else None)


def test_feedback_refuses_what_it_cannot_store(team, plan):
    receive = dict(actor=team[Role.CLINICAL_LEAD], project=team.project, source="patient")
    for bad in (
        {"category": "nonsense"},
        {"category": "other", "rating": 9},
        {"category": "other", "text": "x\x00"},
        {"category": "other", "record_reference": "r" * 201},
    ):
        with pytest.raises(ValidationError):
            services.feedback_submit(**receive, **bad)


# --- Scheduled work ---


def test_an_overdue_review_is_flagged_once_and_cleared_by_an_approval(team, plan):
    batch = send_batch(team, plan, 0, records(0))
    approve_monitoring(team, batch)
    long_ago = timezone.now() - datetime.timedelta(days=120)
    Gate.objects.filter(pk=monitoring_gate(team).pk).update(decided_at=long_ago)
    assert services.monitoring_reviews_flag_overdue() == [team.project.pk]
    assert services.monitoring_reviews_flag_overdue() == []
    [event] = actions(team.project, Action.MONITORING_REVIEW_OVERDUE)
    assert event.actor_user_id is None and event.after["gate_state"] == "approved"
    flags = monitoring_flags([team.project.pk])[team.project.pk]
    assert flags.review_overdue and flags.attention
    Gate.objects.filter(pk=monitoring_gate(team).pk).update(decided_at=timezone.now())
    services.monitoring_reviews_flag_overdue()
    assert not monitoring_flags([team.project.pk])[team.project.pk].review_overdue


def test_a_missed_schedule_catches_up_once_never_twice(db):
    interval = datetime.timedelta(minutes=5)
    start = timezone.now()
    assert services.scheduled_job_claim("job", interval=interval, now=start)
    assert not services.scheduled_job_claim("job", interval=interval, now=start)
    # Beat was down for an hour, then delivers the missed schedules in a burst.
    later = start + datetime.timedelta(hours=1)
    burst = [services.scheduled_job_claim("job", interval=interval, now=later) for _ in range(12)]
    assert burst.count(True) == 1
    assert ScheduledJob.objects.get(name="job").runs == 2
    assert services.scheduled_job_claim("job", interval=interval, now=later + interval)


def test_the_sweep_fails_batches_whose_evaluation_failed_and_requeues_lost_analyses(
    team, plan, in_process_tasks, django_capture_on_commit_callbacks
):
    failed = send_batch(team, plan, 0, records(0), analyse=False)
    lost = send_batch(team, plan, 1, records(1), analyse=False)
    MonitoringBatch.objects.filter(pk=failed.pk).update(status=BatchStatus.EVALUATING)
    EvaluationRun.objects.filter(pk=failed.run_id).update(
        status=RunStatus.FAILED, error_message="worker lost"
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = monitoring_sweep.apply().get()
    assert result["failed"] == [failed.run_id] and result["queued"] == [lost.run_id]
    failed.refresh_from_db(), lost.refresh_from_db()
    assert failed.status == BatchStatus.FAILED and "worker lost" in failed.error_message
    assert lost.status == BatchStatus.ANALYSED
    assert monitoring_sweep.apply().get() == {
        "skipped": "not due: another delivery of this schedule ran it"
    }


def test_the_evaluation_job_queues_the_analysis_of_a_batch(
    team, plan, in_process_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.monitoring_batch_submit(
            actor=team[Role.DATA_STEWARD],
            project=team.project,
            upload=ContentFile(records(0), name="week.jsonl"),
            period_start=plan.starts_on,
        )
    batch.refresh_from_db()
    assert batch.run.status == RunStatus.SUCCEEDED
    assert batch.status == BatchStatus.ANALYSED
    assert json.dumps(batch.drift, allow_nan=False)


def test_an_open_serious_incident_holds_the_monitoring_gate_until_it_is_resolved(
    team, plan, client
):
    batch = send_batch(team, plan, 0, records(0))
    incident = services.incident_report(
        actor=team[Role.CLINICAL_LEAD],
        project=team.project,
        title="Missed sepsis in a transferred patient",
        severity="critical",
    )
    settle(team, Phase.MONITORING)
    gate_services.gate_submit(
        actor=team.creator, gate=monitoring_gate(team), evidence_runs=[batch.run]
    )
    readiness = readiness_of(monitoring_gate(team))
    assert not readiness.can_be_approved
    assert f"serious incident {incident.number} open: {incident.title}" in readiness.blockers
    assert "1 serious incident(s) open" in readiness.next_action
    client.force_login(team[Role.COMMITTEE_CHAIR])
    page = client.get(f"/projects/{team.project.slug}/phases/monitoring/").content.decode()
    link = f'href="/projects/{team.project.slug}/incidents/{incident.number}/"'
    assert f"{link}>serious incident {incident.number}</a> resolved" in page
    with pytest.raises(ValidationError) as refused:
        approve(team, monitoring_gate(team))
    assert "cannot be approved while serious incidents are open" in str(refused.value)
    services.incident_update(
        actor=team[Role.CLINICAL_SAFETY_OFFICER],
        incident=incident,
        status="resolved",
        resolution="Transfer notes are now included in the input.",
    )
    approve(team, monitoring_gate(team))
    assert monitoring_gate(team).state == Gate.State.APPROVED


# --- Found in review ---


def test_the_plan_starts_within_three_years_back_and_one_ahead(team, plan):
    for starts_on in (datetime.date(9999, 12, 1), datetime.date(1, 1, 1)):
        with pytest.raises(ValidationError) as refused:
            services.monitoring_plan_save(
                actor=team[Role.COMMITTEE_CHAIR],
                project=team.project,
                baseline_run=plan.baseline_run,
                metrics=["auroc"],
                cohorts=[],
                starts_on=starts_on,
            )
        assert "three years back, one ahead" in str(refused.value.message_dict["starts_on"])


def test_before_the_first_review_the_due_date_follows_the_plan(team, plan):
    chair = team[Role.COMMITTEE_CHAIR]
    saved = services.monitoring_plan_save(
        actor=chair,
        project=team.project,
        baseline_run=plan.baseline_run,
        metrics=plan.metrics,
        cohorts=plan.cohorts,
        starts_on=plan.starts_on,
        review_interval_days=30,
    )
    start = datetime.datetime.combine(plan.starts_on, datetime.time.min, tzinfo=datetime.UTC)
    assert saved.review_due_at == start + datetime.timedelta(days=30)
    assert monitoring_flags([team.project.pk])[team.project.pk].review_overdue


def test_a_resolved_serious_incident_reopened_reopens_the_approved_gate(team, plan):
    batch = send_batch(team, plan, 0, records(0))
    officer = team[Role.CLINICAL_SAFETY_OFFICER]
    incident = services.incident_report(
        actor=team[Role.CLINICAL_LEAD], project=team.project, title="Wrong ward", severity="serious"
    )
    services.incident_update(
        actor=officer, incident=incident, status="resolved", resolution="Ward mapping fixed."
    )
    approve_monitoring(team, batch)
    services.incident_update(actor=officer, incident=incident, status="open", note="It recurred.")
    gate = monitoring_gate(team)
    assert gate.state == Gate.State.OPEN
    assert f"incident {incident.number} reopened as serious" in gate.reopened_reason


def test_a_persisting_shift_does_not_restart_a_review_under_way(
    team, plan, settings, django_capture_on_commit_callbacks, in_process_tasks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    quiet = send_batch(team, plan, 0, records(0))
    settle(team, Phase.MONITORING)
    gate_services.gate_submit(
        actor=team.creator, gate=monitoring_gate(team), evidence_runs=[quiet.run]
    )
    with django_capture_on_commit_callbacks(execute=True):
        for week in (1, 2, 3):
            send_batch(team, plan, week, records(week, n=400, **SHIFTED))
    gate = monitoring_gate(team)
    assert gate.state == Gate.State.IN_REVIEW and gate.review_round == 2  # one new round only
    # The cause that reopened it first, then the latest finding.
    first, latest = gate.reopened_reason.split(" — still found: ")
    assert first.startswith("batch 2 ") and latest.startswith("batch 4 ")
    subjects = [m.subject for m in mail.outbox if "Monitoring reopened" in m.subject]
    assert len({m.to[0] for m in mail.outbox if "Monitoring reopened" in m.subject}) == len(
        subjects
    )  # each person told once
    assert len(actions(team.project, Action.GATE_MONITORING_REOPEN)) == 3


def test_a_batch_whose_evaluation_fails_is_failed_without_waiting_for_the_sweep(
    team, plan, in_process_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    from lifecycle.evaluations import tasks as evaluation_tasks

    def refuse(*args, **kwargs):
        raise RuntimeError("the engine crashed")

    monkeypatch.setattr(evaluation_tasks, "evaluate", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.monitoring_batch_submit(
            actor=team[Role.DATA_STEWARD],
            project=team.project,
            upload=ContentFile(records(0), name="week.jsonl"),
            period_start=plan.starts_on,
        )
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FAILED
    assert "the engine crashed" in batch.error_message


def test_a_batch_computes_what_the_monitoring_criteria_judge(team):
    plan = deploy(
        team,
        criteria=[
            {"metric": "precision", "scope": "overall", "comparator": ">=", "threshold": 0.1}
        ],
    )
    services.monitoring_plan_save(
        actor=team[Role.COMMITTEE_CHAIR],
        project=team.project,
        baseline_run=plan.baseline_run,
        metrics=["auroc"],
        cohorts=[],
        starts_on=plan.starts_on,
    )
    batch = send_batch(team, plan, 0, records(0))
    assert batch.run.metrics == ["auroc", "precision"]
    [verdict] = readiness_of(monitoring_gate(team)).verdicts
    assert verdict.status == "pass"
