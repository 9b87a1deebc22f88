"""Thin views: read through selectors, render. The committee UI grows on these pages."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from governance import signoffs
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
