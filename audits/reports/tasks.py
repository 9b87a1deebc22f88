"""The job that generates a requested compliance report."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from audits.context import system_context
from audits.reports import services


@shared_task(name=services.GENERATE_REPORT_TASK, acks_late=True, reject_on_worker_lost=True)
def generate_report(report_id: int) -> str:
    """Build, seal and store report `report_id` (queued by `report_request`)."""
    with system_context("celery:audits.generate_report"):
        return services.report_generate(report_id)


@shared_task(name="audits.sweep_reports")
def sweep_reports() -> dict[str, list[int]]:
    """Queue again the reports whose job never came, fail those whose job stopped (Celery
    beat, every REPORT_SWEEP_INTERVAL seconds)."""
    now = timezone.now()
    with system_context("celery:audits.sweep_reports"):
        return services.reports_sweep(
            queued_before=now - timedelta(seconds=settings.REPORT_QUEUED_AFTER),
            running_before=now - timedelta(seconds=settings.REPORT_STALE_AFTER),
        )
