import datetime
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audits.context import system_context
from audits.models import Report, ReportKind, ReportStatus
from audits.reports import services
from governance.models import Project

# An output file's extension chooses the format when --format is not given.
_BY_SUFFIX = {".pdf": "pdf", ".csv": "csv", ".jsonl": "jsonl", ".xml": "xml", ".json": "json"}


def _date(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"“{value}” is not a date: write it as YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = (
        "Generate a sealed compliance report of a project, the same file the Reports page and "
        "the API produce, and write it to --output. Recorded in the project's audit trail."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, metavar="SLUG")
        parser.add_argument("--kind", required=True, choices=ReportKind.values)
        parser.add_argument("--gate", metavar="PHASE", default="", help="dossier: one gate")
        parser.add_argument("--since", metavar="DATE", type=_date, help="audit: first day")
        parser.add_argument("--until", metavar="DATE", type=_date, help="audit: last day")
        parser.add_argument(
            "--format",
            default="",
            help="pdf, csv, jsonl, xml or json (default: from --output's extension, else the "
            "kind's default)",
        )
        parser.add_argument("--output", required=True, metavar="FILE", type=Path)

    def handle(self, *args, project, kind, gate, since, until, format, output, **options) -> None:
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"No project “{project}”.") from None
        file_format = format or _BY_SUFFIX.get(output.suffix.lower(), "")
        if output.is_dir():
            raise CommandError(f"--output {output} is a directory; name the file to write.")
        with system_context("manage.py export_report"):
            try:
                report = services.report_request(
                    actor=None,
                    project=target,
                    kind=kind,
                    file_format=file_format,
                    gate_phase=gate,
                    since=since,
                    until=until,
                    run_job=False,
                )
            except ValidationError as exc:
                raise CommandError(
                    "; ".join(f"--{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
                ) from None
            services.report_generate(report.pk)
        report = Report.objects.get(pk=report.pk)
        if report.status != ReportStatus.SUCCEEDED:
            raise CommandError(report.error or f"The report is {report.status}.")
        with report.file.open("rb") as handle:
            output.write_bytes(handle.read())
        self.stderr.write(
            f"Wrote {report} to {output}: {report.size} bytes, SHA-256 {report.sha256}, sealed "
            f"with {report.seal['key_id']}."
        )
        if report.missing_facts:
            self.stderr.write(
                "Facts the project has not recorded (the report says so instead of inventing "
                f"them): {', '.join(report.missing_facts)}"
            )
