"""The dashboard, the project overview and the model facts page: read through selectors, call
a service, render."""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from governance.admin_base import run_service
from governance.models import Project, User
from governance.permissions import project_access
from governance.selectors import memberships_of_project, project_get_for_user
from lifecycle.gates.readiness import gate_readiness
from lifecycle.gates.selectors import gates_for_project
from lifecycle.projects import dashboard, services
from lifecycle.projects.facts import FACTS, FACTS_BY_KEY
from lifecycle.projects.forms import DashboardFilterForm, ModelFactsForm, fact_uses
from lifecycle.projects.selectors import ModelFactsState, fact_values, model_facts_state


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


@login_required
@require_http_methods(["GET", "POST"])
def model_facts(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's model facts by section, each with its help and the exports that use it,
    and what the CHAI card and HTI-1 still lack; edited by those who may change the project's
    details (`change_project`), read by every member."""
    actor = request.user
    if not isinstance(actor, User):  # login_required: never anonymous; narrows the type
        raise PermissionDenied
    project = get_visible_project(request, slug)
    access = project_access(actor, project)
    may_edit = access.can("change_project")
    state = model_facts_state(project)
    form = ModelFactsForm(initial=state.values) if may_edit else None
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied("Your roles on this project do not allow changing its facts.")
        form = ModelFactsForm(request.POST, initial=state.values)
        if form.is_valid():
            changes = form.changes()
            saved = run_service(
                form,
                lambda: services.model_facts_update(
                    actor=actor,
                    project=project,
                    changes=changes,
                    reason=form.cleaned_data["reason"],
                ),
            )
            if saved is not None:
                now = fact_values(saved)
                changed = [key for key in changes if now[key] != state.values[key]]
                messages.success(request, _saved_message(changed))
                return redirect("model-facts", project.slug)
    return render(
        request,
        "lifecycle/model_facts.html",
        {
            "project": project,
            "phases": list(project.gates.order_by("position")),
            "access": access,
            "may_edit": may_edit,
            "form": form,
            "state": state,
            "missing_lists": [
                ("For the CHAI Applied Model Card", state.missing_chai),
                ("For the HTI-1 source attributes", state.missing_hti1),
            ],
            "sections": _sections(state, form),
        },
        status=400 if form is not None and form.errors else 200,
    )


def _saved_message(changed: list[str]) -> str:
    if not changed:
        return "Nothing changed: the model facts are as they were."
    labels = ", ".join(FACTS_BY_KEY[key].label for key in changed)
    return f"Model facts saved ({len(changed)} changed: {labels})."


def _sections(state: ModelFactsState, form: ModelFactsForm | None) -> list[dict[str, Any]]:
    """The facts grouped by section, in declaration order, each with what the page shows."""
    missing = {fact.key for fact in (*state.missing_chai, *state.missing_hti1)}
    sections: dict[str, list[dict[str, Any]]] = {}
    for fact in FACTS:
        sections.setdefault(fact.section, []).append(
            {
                "fact": fact,
                "value": state.values[fact.key],
                "uses": fact_uses(fact),
                "missing": fact.key in missing,
                "field": form[fact.key] if form is not None else None,
            }
        )
    return [{"title": title, "rows": rows} for title, rows in sections.items()]
