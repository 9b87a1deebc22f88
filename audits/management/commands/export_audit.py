import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audits.context import system_context
from audits.services import audit_export
from governance.models import Project


class Command(BaseCommand):
    help = (
        "Export an audit chain as JSON Lines with its hashes (verifiable offline with "
        "verify_audit --file). The export is recorded in the chain."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", metavar="SLUG", help="export this project's chain")
        parser.add_argument(
            "--output", metavar="FILE", type=Path, help="write here instead of standard output"
        )

    def handle(self, *args, project=None, output=None, **options) -> None:
        target = None
        if project is not None:
            try:
                target = Project.objects.get(slug=project)
            except Project.DoesNotExist:
                raise CommandError(f"No project “{project}”.") from None
        with system_context("manage.py export_audit"):
            if output is None:
                chain = audit_export(actor=None, project=target, out=sys.stdout)
            else:
                with output.open("w", encoding="utf-8") as handle:
                    chain = audit_export(actor=None, project=target, out=handle)
        if output is not None:
            self.stderr.write(f"Exported {chain.length} event(s) of {chain.key} to {output}.")
