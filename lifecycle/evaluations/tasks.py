"""Background evaluation jobs.

The job claims its run with a conditional update and exits if someone else holds it or it is
finished; it scores the stored file with the metric engine, reporting progress (from inside
every long stage) as a heartbeat, while a background thread keeps the heartbeat fresh as long
as the process lives; and it writes the results in one transaction that only the current claim
holder may commit, so a redelivered task (acks late, a worker killed mid-run) never stores a
second set. Transient errors (database or broker connections) are retried with backoff and
jitter; anything else fails the run with its message.

The sweeper queues again the runs whose worker went silent; it runs on Celery beat and, so that
a deployment without beat recovers too, whenever a worker starts.
"""

import logging
import random
import threading
import time
import uuid
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.utils import timezone

from audits.context import system_context
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.metrics import Limits, RecordError, evaluate

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


# Progress reaches the database at most this often: per-record stages report far more often.
PROGRESS_EVERY = 1.0  # seconds


class RunReclaimed(Exception):
    """Another job took the run over (this worker was presumed lost)."""


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.EVALUATION_STALE_AFTER)


def beat_interval() -> float:
    """Seconds between a running job's background heartbeats: derived from
    EVALUATION_STALE_AFTER so that three beats fit in it, whatever it is set to, and one late
    or failed beat never makes a live run look lost."""
    return settings.EVALUATION_STALE_AFTER / 3


class Heartbeat:
    """While a job runs, a daemon thread refreshes its run's heartbeat every `beat_interval()`
    seconds on the thread's own database connection. A live worker inside a stage that cannot
    report progress (one long library call) is then never taken for a lost one: only a dead
    process goes stale. When the job no longer holds the run, the thread stops and says so in
    `reclaimed`, for the job to stop at its next progress report."""

    def __init__(self, run_id: int, token: uuid.UUID) -> None:
        self.run_id, self.token = run_id, token
        self.interval = beat_interval()
        self.reclaimed = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-evaluation-run-{run_id}", daemon=True
        )

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        # Bounded: a beat stuck on a locked database must not hold the finished job up (the
        # thread is a daemon, and its beat can no longer change a finished run).
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self._stopping.wait(self.interval):
                try:
                    held = evaluation_services.evaluation_run_heartbeat(
                        run_id=self.run_id, token=self.token
                    )
                except TRANSIENT:
                    logger.warning("heartbeat of evaluation run %s failed", self.run_id)
                    continue
                if not held:
                    self.reclaimed.set()
                    return
        finally:
            connections.close_all()  # the connections of this thread only


@shared_task(
    bind=True,
    name=evaluation_services.RUN_EVALUATION_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
)
def run_evaluation(self: Task[[int], str], run_id: int) -> str:
    """Score evaluation run `run_id` and attach its results to the gate."""
    with system_context("celery:lifecycle.run_evaluation"):
        token = evaluation_services.evaluation_run_claim(
            run_id=run_id, stale_before=_stale_before()
        )
        if token is None:
            return "skipped: finished or claimed by another job"
        run = EvaluationRun.objects.get(pk=run_id)
        heartbeat = Heartbeat(run_id, token)
        last_report = -PROGRESS_EVERY

        def progress(fraction: float, message: str) -> None:
            # Called from inside long stages (every few hundred records); passed on at most
            # once a PROGRESS_EVERY, and where the job may stop if it lost the run.
            nonlocal last_report
            if heartbeat.reclaimed.is_set():
                raise RunReclaimed
            now = time.monotonic()
            if now - last_report < PROGRESS_EVERY and fraction < 1:
                return
            last_report = now
            if not evaluation_services.evaluation_run_heartbeat(
                run_id=run_id, token=token, progress=fraction, message=message
            ):
                raise RunReclaimed

        try:
            with heartbeat, run.file.open("rb") as stream:
                result = evaluate(
                    stream,
                    filename=run.original_name,
                    task=run.task or None,
                    metrics=run.metrics or None,
                    seed=run.seed,
                    resamples=run.resamples,
                    limits=Limits.from_settings(settings),
                    progress=progress,
                )
            if result.get("provenance", {}).get("input_sha256") not in (None, run.sha256):
                raise ValueError("the stored file no longer matches the SHA-256 taken at upload")
            # Checked at upload too; here for files stored without reading them first.
            uncovered = evaluation_services.coverage_problem(
                result.get("n_records") or 0, run.dataset_version, run.subset_reason
            )
            if uncovered:
                evaluation_services.evaluation_run_fail(
                    run_id=run_id, token=token, message=uncovered
                )
                return "failed: does not cover its dataset version"
            stored = evaluation_services.evaluation_run_succeed(
                run_id=run_id, token=token, result=result
            )
            return "succeeded" if stored else "skipped: claimed by another job"
        except RunReclaimed:
            return "skipped: claimed by another job"
        except RecordError as exc:
            evaluation_services.evaluation_run_fail(run_id=run_id, token=token, message=str(exc))
            return "failed: refused file"
        except SoftTimeLimitExceeded:
            evaluation_services.evaluation_run_fail(
                run_id=run_id,
                token=token,
                message=f"Out of time ({settings.CELERY_TASK_SOFT_TIME_LIMIT} s): evaluate fewer.",
            )
            return "failed: time limit"
        except TRANSIENT as exc:
            if self.request.retries >= (self.max_retries or 0):
                evaluation_services.evaluation_run_fail(
                    run_id=run_id, token=token, message=f"Gave up after retries: {exc}"
                )
                return "failed: transient errors persisted"
            # Back to queued so the retry can claim it; exponential backoff with full jitter.
            evaluation_services.evaluation_run_release(
                run_id=run_id, token=token, reason=f"transient error, retrying: {exc}"
            )
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        except Exception as exc:
            logger.exception("evaluation run %s failed", run_id)
            evaluation_services.evaluation_run_fail(
                run_id=run_id, token=token, message=f"The evaluation failed: {exc}"
            )
            return "failed: error"


def _backoff(retries: int) -> float:
    return random.uniform(0, min(300, 5 * 2**retries))  # noqa: S311 - jitter, not security


@shared_task(name="lifecycle.sweep_evaluation_runs")
def sweep_evaluation_runs() -> list[int]:
    """Queue again runs stuck in queued (a lost message) or running without a heartbeat (a
    lost worker). Run by Celery beat every EVALUATION_SWEEP_INTERVAL seconds, and by every
    worker as it starts (`recover_runs_when_a_worker_starts`)."""
    with system_context("celery:lifecycle.sweep_evaluation_runs"):
        return evaluation_services.evaluation_runs_requeue_stuck(
            queued_before=timezone.now() - timedelta(seconds=settings.EVALUATION_STALE_AFTER),
            stale_before=_stale_before(),
        )


@worker_ready.connect
def recover_runs_when_a_worker_starts(**kwargs: Any) -> None:
    """Queue the sweep when a worker starts, and once more EVALUATION_STALE_AFTER later.

    Without Celery beat, a run whose worker died would stay running until the broker redelivers
    its message (the visibility timeout, 40 minutes by default). The first sweep recovers the
    runs already stale; the second those whose worker died just before this one started, once
    their heartbeat has gone stale too."""
    sweep_evaluation_runs.delay()
    sweep_evaluation_runs.apply_async(countdown=settings.EVALUATION_STALE_AFTER + 1)
