"""Thin views of the governance pages: read through selectors, call services, render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from governance import dashboard, services
from governance.admin_base import add_service_errors
from governance.forms import ApiTokenForm, DashboardFilterForm
from governance.models import Project
from governance.permissions import project_access
from governance.selectors import memberships_of_project, project_get_for_user, projects_for_user
from lifecycle.selectors import gates_for_project


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The dashboard: what waits for me, and every project I can see with what blocks it."""
    projects = dashboard.filtered_projects(request.user, request.GET)
    page = Paginator(projects, 50).get_page(request.GET.get("page"))
    required = dashboard.requirements()
    return render(
        request,
        "governance/dashboard.html",
        {
            "rows": dashboard.project_rows(list(page.object_list), required),
            "page": page,
            "pending": dashboard.pending_signoffs(request.user, required),
            "assigned": dashboard.assigned_items(request.user)[:50],
            "filters": DashboardFilterForm(request.GET),
            "query": request.GET.copy(),
        },
    )


def get_visible_project(request: HttpRequest, slug: str) -> Project:
    """The project if the user may see it; 404 otherwise, never 403."""
    try:
        return project_get_for_user(request.user, slug)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


@login_required
def project_overview(request: HttpRequest, slug: str) -> HttpResponse:
    """The five gates as a timeline, the project's facts, versions, team and latest runs."""
    project = get_visible_project(request, slug)
    project = Project.objects.select_related("owner", "checklist_template", "signoff_policy").get(
        pk=project.pk
    )
    return render(
        request,
        "governance/project_overview.html",
        {
            "project": project,
            "gates": list(gates_for_project(project)),
            "memberships": memberships_of_project(project).order_by("user__last_name", "role"),
            "model_versions": project.model_versions.select_related("created_by"),
            "dataset_versions": project.dataset_versions.select_related("created_by"),
            "runs": project.evaluation_runs.select_related(
                "gate", "model_version", "dataset_version"
            )[:10],
            "access": project_access(request.user, project),
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
