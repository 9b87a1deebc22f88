"""Evaluation runs, results, gate criteria and the background job."""

import time
import uuid
from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.utils import timezone

from audits.models import AuditEvent
from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun
from lifecycle.evaluations.tasks import run_evaluation, sweep_evaluation_runs
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate, Signature
from lifecycle.gates.readiness import readiness_of
from lifecycle.phases import Phase
from tests.factories import make_team, make_versions, pass_gate, settle, sign

pytestmark = pytest.mark.django_db

METRICS = ["recall", "auroc", "confusion_matrix", "demographic_parity_difference"]


def start(
    team,
    *,
    records=None,
    name="records.jsonl",
    gate=None,
    actor=None,
    metrics=METRICS,
    check_records=True,
):
    model, dataset = (
        (team.project.model_versions.get(), team.project.dataset_versions.get())
        if team.project.model_versions.exists()
        else make_versions(team)
    )
    data = (
        records
        if records is not None
        else binary_classifier(seed=1, n=400, prevalence=0.3, separation=1.5)
    )
    return evaluation_services.evaluation_run_start(
        actor=actor or team[Role.DATA_STEWARD],
        gate=gate or team.project.gates.get(phase=Phase.PLANNING),
        model_version=model,
        dataset_version=dataset,
        upload=ContentFile(data, name=name),
        metrics=metrics,
        resamples=200,
        check_records=check_records,
    )


def criterion(team, gate=None, **fields):
    defaults = {"metric": "auroc", "bound": "value", "comparator": ">=", "threshold": 0.8}
    return gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=gate or team.project.gates.get(phase=Phase.PLANNING),
        **{**defaults, **fields},
    )


def test_an_upload_is_stored_hashed_and_queued_after_commit(
    team, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        run = start(team)
    assert len(callbacks) == 1  # enqueued only once the transaction commits
    assert run.status == "queued" and len(run.sha256) == 64 and run.size > 0
    assert run.task == team.project.task_category
    event = AuditEvent.objects.filter(action="evaluation_run.start").get()
    assert event.after["sha256"] == run.sha256 and event.actor_user == team[Role.DATA_STEWARD]


@pytest.mark.parametrize("role", [Role.CLINICAL_LEAD, Role.COMMITTEE_CHAIR, Role.AUDITOR])
def test_only_the_dev_team_uploads(team, role):
    with pytest.raises(PermissionDenied):
        start(team, actor=team[role])
    assert not EvaluationRun.objects.exists()


def test_bad_upload_requests_are_refused_with_the_field(team):
    with pytest.raises(ValidationError) as caught:
        start(team, gate=team.project.gates.get(phase=Phase.DATA))
    assert "locked" in caught.value.message_dict["gate"][0]
    with pytest.raises(ValidationError) as caught:
        start(team, metrics=["auroc", "telepathy"])
    assert "telepathy" in caught.value.message_dict["metrics"][0]
    other = make_team()
    foreign, _ = make_versions(other)
    with pytest.raises(ValidationError) as caught:
        evaluation_services.evaluation_run_start(
            actor=team[Role.DATA_STEWARD],
            gate=team.project.gates.first(),
            model_version=foreign,
            dataset_version=team.project.dataset_versions.get(),
            upload=ContentFile(b"{}", name="r.jsonl"),
        )
    assert "model_version" in caught.value.message_dict
    assert not EvaluationRun.objects.filter(project=team.project).exists()


def test_the_job_stores_results_as_rows_with_provenance(team):
    run = start(team)
    assert run_evaluation.apply(args=[run.pk]).get() == "succeeded"
    run.refresh_from_db()
    assert (run.status, run.progress, run.n_records) == ("succeeded", 1.0, 400)
    assert run.provenance["input_sha256"] == run.sha256
    assert run.provenance["seed"] == 0 and run.provenance["resamples"] == 200
    overall = EvaluationResult.objects.get(run=run, metric="auroc", scope="overall")
    assert overall.ci_low <= overall.value <= overall.ci_high and overall.n == 400
    groups = EvaluationResult.objects.filter(run=run, metric="recall", scope="group")
    assert {(g.group_attribute, g.group_value) for g in groups} >= {("sex", "F"), ("sex", "M")}
    fairness = EvaluationResult.objects.get(
        run=run, metric="demographic_parity_difference", scope="fairness", group_attribute="sex"
    )
    assert fairness.value is not None
    matrix = EvaluationResult.objects.get(run=run, metric="confusion_matrix", scope="overall")
    assert matrix.value is None and len(matrix.detail["value"]) == 2
    assert AuditEvent.objects.filter(action="evaluation_run.succeed").count() == 1


def test_a_refused_file_fails_the_run_with_the_line_and_stores_nothing(team):
    bad = (
        b'{"id": "a", "label": 1, "score": 0.4, "prediction": 1}\n'
        b'{"id": "b", "label": 0, "score": 1.3, "prediction": 0}\n'
    )
    with pytest.raises(ValidationError) as caught:
        start(team, records=bad, metrics=["auroc"])
    refusal = caught.value.error_dict["file"][0]
    assert refusal.code == "invalid_records" and refusal.params == {"line": 2, "field": "score"}
    assert not EvaluationRun.objects.exists()
    # The job judges the file again, whatever the upload path checked.
    run = start(team, records=bad, metrics=["auroc"], check_records=False)
    assert run_evaluation.apply(args=[run.pk]).get() == "failed: refused file"
    run.refresh_from_db()
    assert run.status == "failed"
    assert "line 2" in run.error_message and "score" in run.error_message
    assert not run.results.exists()
    assert AuditEvent.objects.filter(action="evaluation_run.fail").get().after["error"]


def test_a_second_delivery_of_the_job_does_nothing(team):
    run = start(team)
    run_evaluation.apply(args=[run.pk])
    count = run.results.count()
    assert run_evaluation.apply(args=[run.pk]).get().startswith("skipped")
    assert run.results.count() == count


def test_only_the_current_claim_may_store_results(team):
    run = start(team)
    first = evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=timezone.now())
    assert (
        evaluation_services.evaluation_run_claim(
            run_id=run.pk, stale_before=timezone.now() - timedelta(1)
        )
        is None
    )
    # The worker holding `first` goes silent; a later delivery takes the run over.
    later = timezone.now() + timedelta(seconds=1)
    second = evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=later)
    assert second and second != first
    assert not evaluation_services.evaluation_run_heartbeat(
        run_id=run.pk, token=first, progress=0.5, message=""
    )
    assert not evaluation_services.evaluation_run_succeed(
        run_id=run.pk, token=first, result={"metrics": {}}
    )
    assert not run.results.exists()
    assert evaluation_services.evaluation_run_succeed(
        run_id=run.pk,
        token=second,
        result={
            "n_records": 400,
            "metrics": {"auroc": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 400}},
        },
    )
    assert run.results.count() == 1
    assert EvaluationRun.objects.get(pk=run.pk).attempts == 2
    assert (
        evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=later + timedelta(1))
        is None
    )


def test_a_transient_error_releases_the_run_with_an_event_and_the_retry_finishes_it(
    team, monkeypatch
):
    from django.db import OperationalError

    from lifecycle.evaluations import tasks

    real, calls = tasks.evaluate, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("connection lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "evaluate", flaky)
    run = start(team)
    with pytest.raises(Retry):
        run_evaluation.apply(args=[run.pk])
    run.refresh_from_db()
    assert run.status == "queued" and run.progress_message == "waiting to retry"
    release = AuditEvent.objects.get(action="evaluation_run.requeue")
    assert release.target_id == str(run.pk)
    assert "transient error, retrying: connection lost" in release.payload
    run_evaluation.apply(args=[run.pk])  # the retry's delivery
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 2


def test_only_the_claim_holder_releases_a_run(team):
    run = start(team)
    token = evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=timezone.now())
    assert not evaluation_services.evaluation_run_release(
        run_id=run.pk, token=uuid.uuid4(), reason="not mine"
    )
    assert EvaluationRun.objects.get(pk=run.pk).status == "running"
    assert evaluation_services.evaluation_run_release(run_id=run.pk, token=token, reason="retry")
    assert EvaluationRun.objects.get(pk=run.pk).status == "queued"
    assert AuditEvent.objects.filter(action="evaluation_run.requeue").count() == 1


def test_the_sweeper_requeues_lost_runs(
    team, settings, in_process_tasks, django_capture_on_commit_callbacks
):
    settings.EVALUATION_STALE_AFTER = 60
    queued = start(team)
    lost = start(team)
    token = evaluation_services.evaluation_run_claim(run_id=lost.pk, stale_before=timezone.now())
    old = timezone.now() - timedelta(minutes=5)
    EvaluationRun.objects.filter(pk=queued.pk).update(created_at=old)
    EvaluationRun.objects.filter(pk=lost.pk).update(heartbeat_at=old)
    fresh = start(team)  # neither old nor stale: left alone
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        requeued = sweep_evaluation_runs.apply().get()
    assert sorted(requeued) == sorted([queued.pk, lost.pk])
    assert len(callbacks) == 2
    for run in (queued, lost):
        run.refresh_from_db()
        assert run.status == "succeeded"
    assert EvaluationRun.objects.get(pk=fresh.pk).status == "queued"
    assert token is not None


# --- Criteria -----------------------------------------------------------------------------------


def test_an_open_gate_is_previewed_on_its_latest_succeeded_run(team):
    passing = criterion(team, metric="auroc", threshold=0.8)
    failing = criterion(team, metric="recall", bound="ci_low", threshold=0.99)
    fair = criterion(
        team,
        metric="demographic_parity_difference",
        group_attribute="sex",
        comparator="<=",
        threshold=0.5,
    )
    groups = criterion(
        team, metric="recall", scope="each_group", group_attribute="sex", threshold=0.0
    )
    gate = team.project.gates.get(phase=Phase.PLANNING)
    assert {v.status for v in readiness_of(gate).verdicts} == {"no data"}
    run = start(team)
    run_evaluation.apply(args=[run.pk])
    verdicts = {v.criterion: v for v in readiness_of(gate).verdicts}
    assert verdicts[passing].status == "pass" and verdicts[passing].observed > 0.8
    assert verdicts[failing].status == "fail"
    assert verdicts[failing].detail.startswith("lower bound ")
    assert verdicts[fair].status == "pass"
    assert verdicts[groups].status == "pass"
    assert failing.expression == "ci_low(recall) >= 0.99"
    assert fair.expression == "demographic_parity_difference(sex) <= 0.5"
    later = start(team, records=binary_classifier(seed=2, n=400, prevalence=0.3, separation=0.1))
    run_evaluation.apply(args=[later.pk])
    assert {v.criterion: v for v in readiness_of(gate).verdicts}[passing].status == "fail"


def test_only_policy_roles_set_criteria_and_bad_ones_are_refused(team):
    with pytest.raises(PermissionDenied):
        gate_services.gate_criterion_create(
            actor=team.creator,
            gate=team.project.gates.first(),
            metric="auroc",
            comparator=">=",
            threshold=0.9,
        )
    criterion(team)  # the chair
    gate_services.gate_criterion_create(
        actor=team[Role.CLINICAL_SAFETY_OFFICER],
        gate=team.project.gates.first(),
        metric="hallucination_rate",
        comparator="<=",
        threshold=0.02,
    )
    with pytest.raises(ValidationError) as caught:
        criterion(team, metric="vibes")
    assert "metric" in caught.value.message_dict
    with pytest.raises(ValidationError):
        criterion(team, metric="confusion_matrix")
    with pytest.raises(ValidationError) as caught:
        criterion(team, metric="demographic_parity_difference", scope="each_group")
    assert "scope" in caught.value.message_dict


def test_a_failing_required_criterion_blocks_approval(team):
    criterion(team, metric="auroc", threshold=0.999)
    start_and_run = start(team)
    run_evaluation.apply(args=[start_and_run.pk])
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(
        actor=team.creator, gate=team.project.gates.get(phase=Phase.PLANNING)
    )
    with pytest.raises(ValidationError, match=r"auroc >= 0\.999"):
        sign(team, gate, Role.COMMITTEE_CHAIR)
    sign(team, gate, Role.COMMITTEE_CHAIR, "reject", "AUROC below the bar.")


def test_results_and_criteria_are_in_the_manifest_and_changes_invalidate(team):
    criterion(team, metric="auroc", threshold=0.5)
    run = start(team)
    run_evaluation.apply(args=[run.pk])
    pass_gate(team, Phase.PLANNING)
    gate = Gate.objects.get(project=team.project, phase=Phase.PLANNING)
    assert gate.state == "approved"
    manifest = Signature.objects.filter(gate=gate).first().manifest
    assert run.sha256 in manifest and "auroc >= 0.5" in manifest
    # A new evaluation lands on the approved gate: it is not the designated evidence, so the
    # verdict and the signatures stand, and the gate says a newer run exists.
    again = start(team, records=binary_classifier(seed=5, n=400, prevalence=0.3, separation=1.6))
    run_evaluation.apply(args=[again.pk])
    gate.refresh_from_db()
    assert gate.state == "approved"
    assert not Signature.objects.filter(gate=gate, invalidation__isnull=False).exists()
    assert readiness_of(gate).newer_run == again
    # A criterion changed is a change of what was signed: the approval reopens.
    updated = gate_services.gate_criterion_update(
        actor=team[Role.COMMITTEE_CHAIR], criterion=gate.criteria.get(), threshold=0.6
    )
    assert updated.expression == "auroc >= 0.6"
    gate.refresh_from_db()
    assert gate.state == "in_review" and "criterion" in gate.reopened_reason
    assert all(s.invalidation.kind == "invalidated" for s in Signature.objects.filter(gate=gate))


# --- A real worker ---------------------------------------------------------------------------


def wait_for(run: EvaluationRun, statuses: set[str], timeout: float = 90) -> EvaluationRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run.pk} stayed {run.status} ({run.progress_message})")


def test_an_upload_is_scored_by_a_real_worker(celery_worker, live_db, settings):
    settings.MEDIA_ROOT = celery_worker.media_dir
    team = make_team()
    criterion(team, metric="auroc", threshold=0.8)
    run = wait_for(start(team), {"succeeded", "failed"})
    assert run.status == "succeeded", run.error_message
    gate = team.project.gates.get(phase=Phase.PLANNING)
    assert [v.status for v in readiness_of(gate).verdicts] == ["pass"]
    bad = start(
        team,
        records=b'{"id": "x", "label": 1, "score": 0.2}\n{not json\n',
        metrics=["auroc"],
        check_records=False,
    )
    bad = wait_for(bad, {"succeeded", "failed"})
    assert bad.status == "failed" and "line 2" in bad.error_message
    assert not bad.results.exists()


def test_a_worker_killed_mid_run_leaves_one_set_of_results(celery_worker, live_db, settings):
    settings.MEDIA_ROOT = celery_worker.media_dir
    team = make_team()
    records = binary_classifier(seed=9, n=60_000, prevalence=0.2, separation=1.2)
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=Phase.PLANNING),
        model_version=make_versions(team, rows=60_000)[0],
        dataset_version=team.project.dataset_versions.get(),
        upload=ContentFile(records, name="big.jsonl"),
        metrics=[
            "precision",
            "recall",
            "f1",
            "auroc",
            "ece",
            "demographic_parity_difference",
            "equalized_odds_difference",
        ],
        resamples=1000,
    )
    run = wait_for(run, {"running", "succeeded"})
    assert run.status == "running", "the run finished before the worker could be killed"
    celery_worker.kill()
    run.refresh_from_db()
    assert run.status == "running"  # the lost worker cannot say anything any more
    celery_worker.start()
    # The broker redelivers the unacknowledged message, and the sweeper queues it too.
    time.sleep(4)
    settings.EVALUATION_STALE_AFTER = 3
    sweep_evaluation_runs.apply()
    run = wait_for(run, {"succeeded", "failed"}, timeout=180)
    assert run.status == "succeeded", run.error_message
    assert run.attempts >= 2
    metrics = run.results.filter(scope="overall").values_list("metric", flat=True)
    assert sorted(metrics) == sorted(set(metrics))  # one set, no duplicates
    assert (
        AuditEvent.objects.filter(action="evaluation_run.succeed", target_id=str(run.pk)).count()
        == 1
    )
    time.sleep(6)  # late deliveries of the same message change nothing
    assert (
        AuditEvent.objects.filter(action="evaluation_run.succeed", target_id=str(run.pk)).count()
        == 1
    )
    assert uuid.UUID(str(EvaluationRun.objects.get(pk=run.pk).claim_token))
