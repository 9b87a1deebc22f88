"""How an evidence file leaves the system, for the page and the API alike.

Evidence files come from project members and are opened by committee members: a file named
`report.html` or `chart.svg` must never run script in a reader's session. So every file is an
attachment (never shown inline), its type is the one its name implies only when that type is on
a short allow-list of formats browsers do not execute, and the response forbids sniffing and
sandboxes whatever a browser might still render.
"""

import mimetypes

from django.http import FileResponse
from django.utils.http import content_disposition_header

from lifecycle.checklists.models import Evidence

OPAQUE_TYPE = "application/octet-stream"
# Formats a browser displays (if at all) without running anything from the file.
SAFE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "text/plain", "text/csv"})
SANDBOX_POLICY = "default-src 'none'; sandbox"


def download_type(name: str) -> str:
    """The Content-Type to serve a file of this name with: its own type when on the allow-list,
    otherwise application/octet-stream (HTML, SVG, XML, scripts, compressed files, no type)."""
    guessed, encoding = mimetypes.guess_type(name, strict=True)
    return guessed if encoding is None and guessed in SAFE_TYPES else OPAQUE_TYPE


def download_headers(name: str) -> dict[str, str]:
    """Every header that decides how a browser treats a downloaded evidence file."""
    return {
        "Content-Type": download_type(name),
        # RFC 6266: a quoted ASCII name with quotes and backslashes escaped, or `filename*` with
        # the name percent-encoded, so that nothing in the uploaded name can end the header.
        "Content-Disposition": content_disposition_header(True, name) or "attachment",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": SANDBOX_POLICY,
    }


def evidence_file_response(evidence: Evidence) -> FileResponse:
    """The evidence file as a download (the caller has checked access and recorded it)."""
    headers = download_headers(evidence.original_name)
    response = FileResponse(evidence.file.open("rb"), content_type=headers.pop("Content-Type"))
    for header, value in headers.items():
        response[header] = value
    response["X-Content-SHA256"] = evidence.sha256
    return response
