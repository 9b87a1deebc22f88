"""Lifecycle views: thin adapters over selectors and services."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance.models import Project
from governance.roles import Role
from governance.selectors import project_get_for_user
from governance.services import signoff_create
from governance.signoffs import roles_that_may_sign
from lifecycle.forms import SignForm, SubmitForm
from lifecycle.models import Evidence, Gate
from lifecycle.selectors import evidence_for_user
from lifecycle.services import evidence_record_download, gate_submit


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


def _gate_for(request: HttpRequest, slug: str, phase: str) -> Gate:
    try:
        project = project_get_for_user(request.user, slug)
        return project.gates.select_related("project").get(phase=phase)
    except (Project.DoesNotExist, Gate.DoesNotExist):
        raise Http404("No such gate.") from None


def _refused(request: HttpRequest, exc: Exception) -> None:
    for message in getattr(exc, "messages", [str(exc)]):
        messages.error(request, message)


@login_required
@require_POST
def gate_submit_view(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    gate = _gate_for(request, slug, phase)
    form = SubmitForm(request.POST)
    form.is_valid()
    try:
        gate_submit(actor=request.user, gate=gate, note=form.cleaned_data.get("note", ""))
        messages.success(request, f"The {gate.phase_enum.label} gate is now in review.")
    except (ValidationError, PermissionDenied) as exc:
        _refused(request, exc)
    return redirect(f"{gate.project.get_absolute_url()}#gate-{gate.phase}")


@login_required
@require_POST
def gate_sign_view(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    """Sign a gate with re-authentication; every rule is the service's."""
    gate = _gate_for(request, slug, phase)
    roles = [(r, Role(r).label) for r in roles_that_may_sign(request.user, gate)]
    form = SignForm(request.POST, roles=roles)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, f"{form.fields[field].label or field}: {error}")
        return redirect(f"{gate.project.get_absolute_url()}#gate-{gate.phase}")
    try:
        signature = signoff_create(actor=request.user, gate=gate, **form.cleaned_data)
        messages.success(request, f"Signed: {signature.manifestation}")
    except (ValidationError, PermissionDenied) as exc:
        _refused(request, exc)
    return redirect(f"{gate.project.get_absolute_url()}#gate-{gate.phase}")
