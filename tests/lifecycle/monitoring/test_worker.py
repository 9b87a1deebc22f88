"""Monitoring with a real Celery worker and beat on PostgreSQL and Redis (the PostgreSQL pass):
beat's sweep runs once per interval however often it is delivered and flags an overdue
review; a batch goes from upload to alert to a reopened gate through the worker alone."""

import datetime
import time

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from governance.roles import Role
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate
from lifecycle.monitoring import services
from lifecycle.monitoring.models import BatchStatus, MonitoringBatch, MonitoringPlan, ScheduledJob
from lifecycle.monitoring.tasks import SWEEP_JOB
from lifecycle.phases import Phase
from tests.factories import approve, make_team, settle
from tests.lifecycle.monitoring.test_services import SHIFTED
from tests.monitoring import classifier_records, deploy
from tests.workers import BeatProcess


def wait_until(check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def upload(team, plan: MonitoringPlan, week: int, records: bytes) -> MonitoringBatch:
    """The data steward sends a batch; nothing runs here: the worker evaluates and analyses."""
    batch = services.monitoring_batch_submit(
        actor=team[Role.DATA_STEWARD],
        project=team.project,
        upload=ContentFile(records, name=f"week-{week}.jsonl"),
        period_start=plan.starts_on + datetime.timedelta(days=7 * week),
    )

    def settled():
        batch.refresh_from_db()
        return batch.status in (BatchStatus.ANALYSED, BatchStatus.FAILED)

    wait_until(settled, f"batch {batch.number} to be analysed by the worker")
    assert batch.status == BatchStatus.ANALYSED, batch.error_message
    return batch


@pytest.fixture
def beat(redis_url, tmp_path):
    process = BeatProcess(
        redis_url,
        tmp_path,
        {
            "MONITORING_SWEEP_INTERVAL": 1,
            "EVALUATION_SWEEP_INTERVAL": 3600,
            "REPORT_SWEEP_INTERVAL": 3600,
            "AUDIT_CHECKPOINT_INTERVAL": 3600,
        },
    )
    yield process
    process.stop()


def test_beat_and_a_worker_take_a_batch_from_upload_to_alert_to_a_reopened_gate(
    celery_worker, live_db, settings, beat
):
    settings.MEDIA_ROOT = celery_worker.media_dir
    team = make_team()
    plan = deploy(team)
    quiet = upload(team, plan, 0, classifier_records(seed=100, n=300))
    settle(team, Phase.MONITORING)
    gate = team.project.gates.get(phase=Phase.MONITORING)
    gate_services.gate_submit(actor=team.creator, gate=gate, evidence_runs=[quiet.run])
    approve(team, team.project.gates.get(phase=Phase.MONITORING))
    # Approved long ago: the periodic review is overdue, which beat's sweep must flag.
    Gate.objects.filter(pk=gate.pk).update(decided_at=timezone.now() - datetime.timedelta(days=200))

    beat.start()
    wait_until(
        lambda: MonitoringPlan.objects.filter(pk=plan.pk, review_overdue_since__isnull=False),
        "beat's sweep to flag the overdue review",
    )
    wait_until(lambda: beat.sent(SWEEP_JOB) >= 4, "beat to deliver the sweep again and again")
    # Delivered every second, run once: the worker's interval (300 s) has not passed.
    assert ScheduledJob.objects.get(name=SWEEP_JOB).runs == 1

    shifted = upload(team, plan, 1, classifier_records(seed=101, n=400, **SHIFTED))
    signal = shifted.signals.get(rule="threshold")
    incident = signal.incident
    assert incident.severity == "serious" and incident.source == "alert"
    gate.refresh_from_db()
    assert gate.state == Gate.State.OPEN and gate.cycle == 2
    assert f"serious incident {incident.number}" in gate.reopened_reason
