"""Issue 11, items 5 and 12: a live worker's run is never taken for lost, a dead worker's run
is recovered without beat, and the user is told plainly when no worker is doing the work.

Item 5: a long scoring stage (ROUGE on 100,000 records) reported nothing for minutes, so with
EVALUATION_STALE_AFTER shorter than the stage the sweeper queued a healthy run again and again.
Now the engine reports from inside every per-record stage and between bootstrap chunks, and the
job keeps a background heartbeat while its process lives.

Item 12: without beat nothing swept, and a page said "Waiting for a worker…" for ever. Now a
starting worker sweeps, and the run page and the API say when a run has waited too long. And a
run is queued again at most once per stale period (counted from when it was last queued), not at
every sweep while no worker is up.
"""

import io
import time
import uuid
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from audits.models import AuditEvent
from demo.records import binary_classifier, documentation_drafts
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations import tasks
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.evaluations.tasks import sweep_evaluation_runs
from lifecycle.metrics import evaluate
from lifecycle.phases import Phase
from tests.factories import make_team, make_versions, rows_of

TEXT_METRICS = [
    "rouge1",
    "bleu",
    "gleu",
    "token_f1",
    "wer",
    "flesch_kincaid_grade",
    "redundancy_rate",
]


def start(team, records: bytes, metrics: list[str], resamples: int = 10) -> EvaluationRun:
    model, dataset = (
        (team.project.model_versions.get(), team.project.dataset_versions.get())
        if team.project.model_versions.exists()
        else make_versions(team, rows=rows_of(records))
    )
    return evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=Phase.PLANNING),
        model_version=model,
        dataset_version=dataset,
        upload=ContentFile(records, name="records.jsonl"),
        metrics=metrics,
        resamples=resamples,
    )


def requeues(run: EvaluationRun) -> int:
    return AuditEvent.objects.filter(action="evaluation_run.requeue", target_id=str(run.pk)).count()


# --- Item 5: the engine reports from inside long stages ---------------------------------------


def test_it_reports_progress_from_inside_every_per_record_text_stage():
    messages: list[str] = []
    evaluate(
        io.BytesIO(documentation_drafts(seed=3, n=450, error_rate=0.1)),
        filename="drafts.jsonl",
        metrics=TEXT_METRICS,
        resamples=10,
        progress=lambda fraction, message: messages.append(message),
    )
    for stage in ("rouge", "bleu", "gleu", "squad", "wer", "readability", "redundancy"):
        assert f"{stage}: 200 of 450 records" in messages, stage
        assert f"{stage}: 400 of 450 records" in messages, stage


def test_a_progress_callback_stops_the_run_from_inside_a_text_stage():
    class Reclaimed(Exception):
        pass

    def progress(fraction: float, message: str) -> None:
        if message.startswith("rouge:"):
            raise Reclaimed

    # Raised inside a metric, it stops the run: it is not reported as a metric that "could not
    # be computed" while the job goes on scoring a run it no longer holds.
    with pytest.raises(Reclaimed):
        evaluate(
            io.BytesIO(documentation_drafts(seed=3, n=450, error_rate=0.1)),
            filename="drafts.jsonl",
            metrics=["rouge1"],
            resamples=10,
            progress=progress,
        )


def test_the_bootstrap_reports_after_every_chunk(monkeypatch):
    from lifecycle.metrics import bootstrap

    monkeypatch.setattr(bootstrap, "MAX_CHUNK_RESAMPLES", 10)  # 10 resamples a chunk
    messages: list[str] = []
    evaluate(
        io.BytesIO(binary_classifier(seed=1, n=300, prevalence=0.3, separation=1.5)),
        filename="r.jsonl",
        metrics=["auroc"],
        resamples=100,
        progress=lambda fraction, message: messages.append(message),
    )
    chunks = [m for m in messages if m.startswith("bootstrap:")]
    assert chunks == [f"bootstrap: {i} of 10 chunks of resamples" for i in range(1, 11)]


def test_the_background_beat_is_derived_from_the_stale_setting(settings):
    for stale_after in (1, 3, 300):
        settings.EVALUATION_STALE_AFTER = stale_after
        assert tasks.beat_interval() * 3 == pytest.approx(stale_after)


def test_a_live_job_in_a_stage_that_cannot_report_is_not_requeued(
    live_db, settings, in_process_tasks, monkeypatch
):
    """One long library call reports nothing; the job's background heartbeat keeps the run
    fresh, and the sweeper, running meanwhile, leaves it alone."""
    settings.EVALUATION_STALE_AFTER = 1
    real, swept = tasks.evaluate, []

    def one_long_call(*args, **kwargs):
        time.sleep(2.5)  # longer than EVALUATION_STALE_AFTER, without a progress report
        swept.append(sweep_evaluation_runs())  # the sweeper, meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "evaluate", one_long_call)
    team = make_team()
    run = start(team, binary_classifier(seed=1, n=200, prevalence=0.3, separation=1.5), ["auroc"])
    run.refresh_from_db()
    assert run.status == "succeeded", run.error_message
    assert swept == [[]]
    assert run.attempts == 1 and requeues(run) == 0
    assert AuditEvent.objects.filter(action="evaluation_run.succeed").count() == 1


def test_the_background_beat_notices_when_another_job_took_the_run_over(
    live_db, settings, monkeypatch
):
    """The claim still decides: the beat of a job whose run another job took over does not
    refresh it, and tells the job to stop (it would store nothing anyway)."""
    monkeypatch.setattr(evaluation_services, "enqueue_evaluation", lambda run_id: None)
    team = make_team()
    run = start(team, binary_classifier(seed=1, n=200, prevalence=0.3, separation=1.5), ["auroc"])
    first = evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=timezone.now())
    assert first is not None
    later = timezone.now() + timedelta(seconds=1)
    second = evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=later)
    assert second is not None
    heartbeat = tasks.Heartbeat(run.pk, first)
    heartbeat.interval = 0.01
    with heartbeat:
        assert heartbeat.reclaimed.wait(5)
    assert EvaluationRun.objects.get(pk=run.pk).claim_token == second


# --- Item 12: tell the user when a run waits too long -----------------------------------------


@pytest.mark.django_db
def test_the_run_page_and_the_api_say_when_no_worker_took_a_run_up(client, team, settings):
    settings.EVALUATION_STALE_AFTER = 300
    run = start(team, binary_classifier(seed=1, n=50, prevalence=0.3, separation=1.5), ["auroc"])
    page = reverse("run", args=[team.project.slug, run.pk])
    api = f"/api/v1/projects/{team.project.slug}/evaluation-runs/{run.pk}/"
    client.force_login(team.creator)
    fresh = client.get(page).content.decode()
    assert "Waiting for a worker…" in fresh and "No worker has picked" not in fresh
    assert client.get(api).json()["stall_notice"] == ""

    EvaluationRun.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - timedelta(minutes=10, seconds=5)
    )
    notice = (
        "No worker has picked this run up for 10 minutes. The evaluation service may be down: "
        "tell your administrator."
    )
    assert notice in client.get(page).content.decode()
    assert client.get(api).json()["stall_notice"] == notice


@pytest.mark.django_db
def test_the_run_page_and_the_api_say_when_a_worker_went_silent(client, team, settings):
    settings.EVALUATION_STALE_AFTER = 300
    run = start(team, binary_classifier(seed=1, n=50, prevalence=0.3, separation=1.5), ["auroc"])
    evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=timezone.now())
    page = reverse("run", args=[team.project.slug, run.pk])
    api = f"/api/v1/projects/{team.project.slug}/evaluation-runs/{run.pk}/"
    client.force_login(team.creator)
    assert "stopped reporting" not in client.get(page).content.decode()

    EvaluationRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=7, seconds=5)
    )
    notice = (
        "The worker stopped reporting progress 7 minutes ago; it will be retried automatically."
    )
    assert notice in client.get(page).content.decode()
    assert client.get(api).json()["stall_notice"] == notice


# --- No requeue storm while no worker is up ---------------------------------------------------


@pytest.fixture
def no_worker(team, settings, monkeypatch):
    """A run uploaded while no worker is up, a clock the test moves, and the messages sent."""
    settings.EVALUATION_STALE_AFTER = 300
    sent: list[int] = []
    monkeypatch.setattr(evaluation_services, "enqueue_evaluation", sent.append)
    clock = [timezone.now()]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    run = start(team, binary_classifier(seed=1, n=50, prevalence=0.3, separation=1.5), ["auroc"])

    def sweep_after(seconds: int) -> list[int]:
        clock[0] += timedelta(seconds=seconds)
        return sweep_evaluation_runs()

    return run, sent, sweep_after


@pytest.mark.django_db
def test_a_queued_run_is_queued_again_once_per_stale_period_not_at_every_sweep(no_worker):
    run, sent, sweep_after = no_worker
    assert sweep_after(240) == []
    assert sweep_after(61) == [run.pk]  # queued 301 s ago
    # The sweep every minute (and each starting worker's) within the next stale period:
    assert [sweep_after(60) for _ in range(4)] == [[], [], [], []]
    assert requeues(run) == 1 and sent == [run.pk, run.pk]
    assert sweep_after(61) == [run.pk]  # queued again 301 s ago
    assert requeues(run) == 2 and sent == [run.pk, run.pk, run.pk]
    # The user is still told how long it has waited since the upload, not since the sweep.
    notice = EvaluationRun.objects.get(pk=run.pk).stall_notice
    assert notice.startswith("No worker has picked this run up for 10 minutes.")


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_queued_again_once_per_stale_period(no_worker):
    run, sent, sweep_after = no_worker
    token = evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=timezone.now())
    assert token is not None
    assert sweep_after(301) == [run.pk]  # its heartbeat went silent 301 s ago
    assert [sweep_after(60) for _ in range(4)] == [[], [], [], []]
    assert sweep_after(61) == [run.pk]
    assert requeues(run) == 2 and sent == [run.pk, run.pk, run.pk]


@pytest.mark.django_db
def test_a_run_a_worker_gave_back_waits_a_stale_period_from_then(no_worker):
    run, sent, sweep_after = no_worker
    sweep_after(200)
    token = evaluation_services.evaluation_run_claim(run_id=run.pk, stale_before=timezone.now())
    assert token is not None
    assert evaluation_services.evaluation_run_release(run_id=run.pk, token=token, reason="retry")
    assert sweep_after(200) == []  # 400 s after the upload, 200 s after the release
    assert sweep_after(101) == [run.pk]
    assert requeues(run) == 2  # the release, then the sweep
    assert sent == [run.pk, run.pk]  # the upload's message, then the sweep's


# --- With a real worker -----------------------------------------------------------------------


def test_a_long_rouge_stage_on_a_real_worker_is_never_requeued(celery_worker, live_db, settings):
    """ROUGE over thousands of records takes longer than EVALUATION_STALE_AFTER (3 s for the
    test worker) while the sweeper runs every half second: the run finishes once."""
    settings.MEDIA_ROOT = celery_worker.media_dir
    settings.EVALUATION_STALE_AFTER = 3  # as the worker has it
    team = make_team()
    run = start(
        team, documentation_drafts(seed=5, n=6_000, error_rate=0.1), ["rouge1", "rouge2", "rougeL"]
    )
    running_since, stages = None, set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in ("succeeded", "failed"):
            break
        if run.status == "running":
            running_since = running_since or time.monotonic()
            stages.add(run.progress_message.split(":")[0])
        sweep_evaluation_runs.apply()
        time.sleep(0.5)
    assert run.status == "succeeded", run.error_message
    # The precondition of the test, not its subject: the stage outlasted the stale setting.
    assert running_since and time.monotonic() - running_since > 3, "use more records"
    assert requeues(run) == 0
    assert run.attempts == 1
    assert "rouge" in stages  # progress came from inside the stage
    assert (
        AuditEvent.objects.filter(action="evaluation_run.succeed", target_id=str(run.pk)).count()
        == 1
    )


def test_a_starting_worker_recovers_a_run_its_predecessor_left_running(
    celery_worker, live_db, settings, monkeypatch
):
    """No beat: the run a dead worker held comes back when a worker starts, not 40 minutes
    later when the broker redelivers its message."""
    settings.MEDIA_ROOT = celery_worker.media_dir
    team = make_team()
    # Its message is gone with the dead worker: only a sweep can queue it again.
    monkeypatch.setattr(evaluation_services, "enqueue_evaluation", lambda run_id: None)
    run = start(team, binary_classifier(seed=1, n=200, prevalence=0.3, separation=1.5), ["auroc"])
    EvaluationRun.objects.filter(pk=run.pk).update(
        status="running",
        claim_token=uuid.uuid4(),
        attempts=1,
        heartbeat_at=timezone.now() - timedelta(minutes=10),
    )
    monkeypatch.undo()
    celery_worker.stop()
    celery_worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert run.status == "succeeded", f"{run.status}: {run.stall_notice}"
    assert run.attempts == 2 and requeues(run) == 1
