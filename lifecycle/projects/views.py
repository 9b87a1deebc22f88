"""The dashboard and the project overview: read through selectors, render."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from governance.models import Project
from governance.permissions import project_access
from governance.selectors import memberships_of_project, project_get_for_user
from lifecycle.gates.readiness import gate_readiness
from lifecycle.gates.selectors import gates_for_project
from lifecycle.projects import dashboard
from lifecycle.projects.forms import DashboardFilterForm


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The dashboard: what waits for me, and every project I can see with what blocks it."""
    projects = dashboard.filtered_projects(request.user, request.GET)
    page = Paginator(projects, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "governance/dashboard.html",
        {
            "rows": dashboard.project_rows(list(page.object_list)),
            "page": page,
            "pending": dashboard.pending_signoffs(request.user),
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
    project = (
        Project.objects.restrict(request.user)
        .select_related("owner", "checklist_template", "signoff_policy")
        .get(pk=project.pk)
    )
    gates = list(gates_for_project(project))
    readiness = gate_readiness(gates)
    return render(
        request,
        "governance/project_overview.html",
        {
            "project": project,
            "gates": gates,
            "timeline": [(gate, readiness[gate.pk]) for gate in gates],
            "memberships": memberships_of_project(project).order_by("user__last_name", "role"),
            "model_versions": project.model_versions.select_related("created_by"),
            "dataset_versions": project.dataset_versions.select_related("created_by"),
            "runs": project.evaluation_runs.select_related(
                "gate", "model_version", "dataset_version"
            )[:10],
            "access": project_access(request.user, project),
        },
    )
