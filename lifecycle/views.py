"""Lifecycle views: thin adapters over selectors and services."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest

from lifecycle.models import Evidence
from lifecycle.selectors import evidence_for_user
from lifecycle.services import evidence_record_download


@login_required
def evidence_download(request: HttpRequest, pk: int) -> FileResponse:
    """Serve an evidence file to someone who may see its project (recorded in the audit
    trail); 404 for everyone else."""
    try:
        evidence = evidence_for_user(request.user).get(pk=pk, kind=Evidence.Kind.FILE)
    except Evidence.DoesNotExist:
        raise Http404("No such evidence.") from None
    evidence_record_download(actor=request.user, evidence=evidence)
    response = FileResponse(
        evidence.file.open("rb"), as_attachment=True, filename=evidence.original_name
    )
    response["X-Content-SHA256"] = evidence.sha256
    return response
