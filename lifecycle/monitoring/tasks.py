"""Background monitoring jobs.

`analyse_monitoring_batch` follows a batch's evaluation: it claims the batch with a conditional
update (a redelivered or duplicated job finds it claimed or analysed and does nothing),
computes drift against the baseline's records outside any transaction, and stores drift,
signals and incidents in one transaction (`monitoring_batch_record_analysis`).

`monitoring_sweep` runs on Celery beat: it claims its schedule row first (so a late, repeated
or bursting beat runs it once per interval, and a missed schedule catches up once), then fails
batches whose evaluation failed, queues analyses that never came, and flags overdue periodic
reviews.
"""

import logging
import random
from datetime import datetime, timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from audits.context import system_context
from lifecycle.metrics import Limits, RecordError
from lifecycle.metrics.drift import drift_files
from lifecycle.monitoring import services
from lifecycle.monitoring.models import MonitoringBatch, MonitoringPlan

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
SWEEP_JOB = "lifecycle.monitoring_sweep"


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.EVALUATION_STALE_AFTER)


@shared_task(
    bind=True,
    name=services.ANALYSE_BATCH_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
)
def analyse_monitoring_batch(self: Task[[int], str], run_id: int) -> str:
    """Compare the batch whose evaluation run is `run_id` with the plan's baseline: drift,
    trends, alert rules, incidents, and the monitoring gate when they call for it."""
    with system_context(f"celery:{services.ANALYSE_BATCH_TASK}"):
        token = services.monitoring_batch_claim(run_id=run_id, stale_before=_stale_before())
        if token is None:
            if services.monitoring_batch_fail_evaluated(run_id=run_id):
                return "failed: its evaluation failed"
            return "skipped: not evaluated yet, analysed, or claimed by another job"
        batch = MonitoringBatch.objects.select_related("run").get(run_id=run_id)
        baseline = (
            MonitoringPlan.objects.select_related("baseline_run")
            .get(project=batch.project_id)
            .baseline_run
        )
        try:
            with baseline.file.open("rb") as before, batch.run.file.open("rb") as after:
                report = drift_files(
                    before,
                    baseline.original_name,
                    after,
                    batch.run.original_name,
                    limits=Limits.from_settings(settings),
                )
            stored = services.monitoring_batch_record_analysis(
                run_id=run_id, token=token, drift=report
            )
            return "analysed" if stored else "skipped: claimed by another job"
        except RecordError as exc:
            services.monitoring_batch_fail(run_id=run_id, token=token, message=str(exc))
            return "failed: refused file"
        except TRANSIENT as exc:
            if self.request.retries >= (self.max_retries or 0):
                services.monitoring_batch_fail(
                    run_id=run_id, token=token, message=f"Gave up after retries: {exc}"
                )
                return "failed: transient errors persisted"
            services.monitoring_batch_release(run_id=run_id, token=token)
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        except Exception as exc:
            logger.exception("analysis of monitoring run %s failed", run_id)
            services.monitoring_batch_fail(
                run_id=run_id, token=token, message=f"The analysis failed: {exc}"
            )
            return "failed: error"


def _backoff(retries: int) -> float:
    return random.uniform(0, min(300, 5 * 2**retries))  # noqa: S311 - jitter, not security


@shared_task(name=SWEEP_JOB)
def monitoring_sweep() -> dict[str, Any]:
    """The scheduled monitoring checks (Celery beat, every MONITORING_SWEEP_INTERVAL seconds):
    settle batches and flag overdue periodic reviews, once per interval however often beat
    delivers it."""
    with system_context(f"celery:{SWEEP_JOB}"):
        interval = timedelta(seconds=settings.MONITORING_SWEEP_INTERVAL)
        if not services.scheduled_job_claim(SWEEP_JOB, interval=interval):
            return {"skipped": "not due: another delivery of this schedule ran it"}
        settled = services.monitoring_batches_settle(stale_before=_stale_before())
        overdue = services.monitoring_reviews_flag_overdue()
        services.scheduled_job_finished(SWEEP_JOB)
        return {**settled, "reviews_overdue": overdue}
