"""Background evaluation jobs.

The job claims its run with a conditional update and exits if someone else holds it or it is
finished; it scores the stored file with the metric engine, reporting progress as a heartbeat;
and it writes the results in one transaction that only the current claim holder may commit, so
a redelivered task (acks late, a worker killed mid-run) never stores a second set. Transient
errors (database or broker connections) are retried with backoff and jitter; anything else
fails the run with its message.
"""

import logging
import random
import time
from datetime import datetime, timedelta

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from audits.context import system_context
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.metrics import Limits, RecordError, evaluate

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


class RunReclaimed(Exception):
    """Another job took the run over (this worker was presumed lost)."""


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.EVALUATION_STALE_AFTER)


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
        last_beat = 0.0

        def progress(fraction: float, message: str) -> None:
            nonlocal last_beat
            if time.monotonic() - last_beat < 0.5 and fraction < 1:
                return
            last_beat = time.monotonic()
            if not evaluation_services.evaluation_run_heartbeat(
                run_id=run_id, token=token, progress=fraction, message=message
            ):
                raise RunReclaimed

        try:
            with run.file.open("rb") as stream:
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
    lost worker). Run by Celery beat every EVALUATION_SWEEP_INTERVAL seconds."""
    with system_context("celery:lifecycle.sweep_evaluation_runs"):
        return evaluation_services.evaluation_runs_requeue_stuck(
            queued_before=timezone.now() - timedelta(seconds=settings.EVALUATION_STALE_AFTER),
            stale_before=_stale_before(),
        )
