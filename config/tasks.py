"""Operational Celery tasks of the site itself."""

from celery import shared_task
from django.db import connection
from django.utils import timezone


@shared_task(name="governance.health_check")
def health_check() -> dict[str, str]:
    """Prove that a worker is alive, can reach the database, and report where it ran.

    Used by monitoring and by the test that runs a real worker against real Redis.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": "ok", "database": connection.vendor, "time": timezone.now().isoformat()}
