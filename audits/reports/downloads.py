"""How a stored report is served: an attachment of its own type, never rendered."""

from typing import IO

from django.http import FileResponse

from audits.models import Report
from audits.reports.services import CONTENT_TYPES


def report_file_response(report: Report, handle: IO[bytes]) -> FileResponse:
    """A report as an attachment, never rendered by the browser (the page and the API)."""
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=report.file_name,
        content_type=CONTENT_TYPES[report.format],
    )
    response["X-Content-SHA256"] = report.sha256
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    return response
