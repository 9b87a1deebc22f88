import sys

from django.core.management.base import BaseCommand

from audits.context import system_context
from audits.verification import write_checkpoints


class Command(BaseCommand):
    help = (
        "Verify every audit chain and append a signed checkpoint for each one that verifies "
        "(the same work as the periodic Celery beat task)."
    )

    def handle(self, *args, **options) -> None:
        with system_context("manage.py audit_checkpoint"):
            report = write_checkpoints()
        for problem in report.problems:
            self.stderr.write(f"TAMPERING DETECTED (no checkpoint written): {problem}")
        self.stdout.write(
            f"{report.chains} chain(s), {report.events} event(s); "
            f"{report.checkpointed} new checkpoint(s)."
        )
        if not report.ok:
            sys.exit(1)
