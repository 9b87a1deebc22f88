"""Thin views: read through selectors, render. The committee UI grows on these pages."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from governance import services, signoffs
from governance.admin_base import add_service_errors
from governance.forms import ApiTokenForm
from governance.models import Project
from governance.permissions import has_project_perm
from governance.roles import Role
from governance.selectors import memberships_of_project, project_get_for_user, projects_for_user
from lifecycle.forms import SignForm
from lifecycle.selectors import gates_for_project


@login_required
def home(request: HttpRequest) -> HttpResponse:
    projects = projects_for_user(request.user).select_related("owner").order_by("name")
    return render(request, "governance/home.html", {"projects": projects})


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        project = project_get_for_user(request.user, slug)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None
    gates = list(gates_for_project(project))
    items = project.checklist_items.select_related("assignee").order_by("position")
    items_by_gate: dict[int, list] = {}
    for item in items:
        items_by_gate.setdefault(item.gate_id, []).append(item)
    may_submit = has_project_perm(request.user, "submit_gate", project)
    for gate in gates:
        gate.project = project
        gate.checklist = items_by_gate.get(gate.pk, [])
        gate.conditions = signoffs.gate_conditions(gate) if gate.state != "locked" else None
        gate.runs = list(
            gate.evaluation_runs.select_related("model_version", "dataset_version")[:5]
        )
        gate.can_submit = may_submit and gate.state in ("open", "changes_requested")
        roles = (
            signoffs.roles_that_may_sign(request.user, gate) if gate.state == "in_review" else []
        )
        gate.sign_form = SignForm(roles=[(r, Role(r).label) for r in roles]) if roles else None
    return render(
        request,
        "governance/project_detail.html",
        {
            "project": project,
            "gates": gates,
            "memberships": memberships_of_project(project),
            "model_versions": project.model_versions.all(),
            "dataset_versions": project.dataset_versions.all(),
        },
    )


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and docker-compose."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own page: personal API tokens (created here, shown once, revocable)."""
    visible = projects_for_user(request.user).order_by("name")
    form = ApiTokenForm(request.POST or None, projects=visible)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            token, secret = services.api_token_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                read_only=form.cleaned_data["read_only"],
                projects=form.cleaned_data["projects"],
            )
            form = ApiTokenForm(projects=visible)
            messages.success(request, f"Token “{token.name}” created. Copy it now.")
        except ValidationError as exc:
            add_service_errors(form, exc)
    tokens = request.user.api_tokens.prefetch_related("projects").order_by("-created_at")
    return render(
        request,
        "governance/account.html",
        {"form": form, "secret": secret, "tokens": tokens, "now": timezone.now()},
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = request.user.api_tokens.filter(pk=pk).first()
    if token is None:
        raise Http404("No such token.")
    try:
        services.api_token_revoke(actor=request.user, token=token)
        messages.success(request, f"Token “{token.name}” revoked.")
    except (ValidationError, PermissionDenied) as exc:
        for message in getattr(exc, "messages", [str(exc)]):
            messages.error(request, message)
    return redirect("account")
