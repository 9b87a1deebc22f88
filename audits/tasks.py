"""Periodic audit work: verify every chain and checkpoint it outside the database."""

import logging
from typing import Any

from celery import shared_task

from audits.context import system_context
from audits.verification import write_checkpoints

logger = logging.getLogger(__name__)


@shared_task(name="audits.write_checkpoints")
def write_audit_checkpoints() -> dict[str, Any]:
    """Verify all chains and append a signed checkpoint for each that verifies and grew,
    recorded as an `audit.checkpoint` event of the global chain.

    Run by Celery beat (AUDIT_CHECKPOINT_INTERVAL). A chain that fails verification gets no
    checkpoint; it and any missing append-only trigger are logged as errors for the on-call
    administrator.
    """
    with system_context("celery:audits.write_checkpoints"):
        report = write_checkpoints()
    for problem in report.problems:
        logger.error("audit verification failed: %s", problem)
    return {
        "chains": report.chains,
        "events": report.events,
        "checkpointed": report.checkpointed,
        "problems": [str(p) for p in report.problems],
    }
