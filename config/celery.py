"""The Celery application: Redis broker in production and CI, in-process in the embedded default.

Configuration lives in `config.settings` (the CELERY_* names), so a worker and the web
process always agree on serializer, acknowledgement and time limits.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Task modules outside `<app>/tasks.py`, which autodiscovery does not scan.
app = Celery(
    "governance",
    include=[
        "config.tasks",
        "lifecycle.evaluations.tasks",
        "lifecycle.monitoring.tasks",
        "lifecycle.notifications",
        "audits.reports.tasks",
    ],
)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
