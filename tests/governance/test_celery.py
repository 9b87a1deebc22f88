"""The Celery app's configuration and a real worker running the health-check task."""

from django.conf import settings

from config.celery import app
from config.tasks import health_check


def test_it_is_configured_for_safe_delivery():
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    # Redis must not redeliver a task that is still within its time limit.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_it_runs_in_process_without_a_broker(db, settings):
    if settings.CELERY_BROKER_URL:
        # The PostgreSQL pass has a broker; the in-process mode is checked on SQLite.
        assert app.conf.task_always_eager is False
        return
    assert app.conf.task_always_eager is True
    result = health_check.delay()
    assert result.get()["status"] == "ok"


def test_it_runs_the_health_check_on_a_real_worker(celery_worker, live_db):
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    result = health_check.delay()
    payload = result.get(timeout=30)
    assert payload["status"] == "ok"
    assert payload["database"] == "postgresql"
    # The worker that answered is our subprocess, not an in-process shortcut.
    assert app.control.ping(destination=[celery_worker.hostname], timeout=2)
