"""The criteria page of a gate: every criterion with its verdict, and for the roles that set
gate policy (`set_criteria`: committee chair, clinical safety officer) forms to add, change and
remove criteria written as expressions (`lifecycle.gates.expressions`).

Thin: parse the form, call one gate criterion service, render. A refused change shows the page
again (400) with the error next to the input it concerns; a change saved redirects back.
"""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from governance.admin_base import run_service
from governance.models import Project, User
from governance.permissions import project_access
from governance.selectors import project_get_for_user
from lifecycle.gates import selectors as gate_selectors
from lifecycle.gates import services as gate_services
from lifecycle.gates.forms import CriterionForm
from lifecycle.gates.models import Gate, GateCriterion
from lifecycle.gates.readiness import readiness_of

NEW = "new"  # the prefix of the form that adds a criterion


def _prefix(criterion: GateCriterion) -> str:
    return f"criterion-{criterion.pk}"


def _initial(criterion: GateCriterion) -> dict[str, Any]:
    return {
        "expression": criterion.expression,
        "required": criterion.required,
        "min_records": criterion.min_records,
        "min_group_records": criterion.min_group_records,
    }


def _project_and_gate(user: User, slug: str, phase: str) -> tuple[Project, Gate]:
    try:
        project = project_get_for_user(user, slug)
        return project, gate_selectors.gate_get_for_user(user, project, phase)
    except (Project.DoesNotExist, Gate.DoesNotExist):
        raise Http404("No such project or phase.") from None


def _criterion(user: User, gate: Gate, pk: str | None) -> GateCriterion:
    criterion = (
        GateCriterion.objects.restrict(user).filter(gate=gate, pk=pk).first()
        if pk and pk.isascii() and pk.isdigit()
        else None
    )
    if criterion is None:
        raise Http404("No such criterion on this gate.")
    return criterion


def _post(
    request: HttpRequest, gate: Gate
) -> tuple[str | None, CriterionForm | None, GateCriterion | None]:
    """Handle one add, save or remove: the success message, or the form with its errors."""
    action = request.POST.get("action")
    actor = request.user
    if action == "add":
        form = CriterionForm(request.POST, prefix=NEW)
        added = form.is_valid() and run_service(
            form,
            lambda: gate_services.gate_criterion_create(
                actor=actor, gate=gate, **form.criterion_fields()
            ),
        )
        if added:
            return f"Criterion “{added.expression}” added.", None, None
        return None, form, None
    criterion = _criterion(actor, gate, request.POST.get("criterion"))
    if action == "delete":
        gate_services.gate_criterion_delete(actor=actor, criterion=criterion)
        return f"Criterion “{criterion.expression}” removed.", None, None
    if action != "save":
        raise Http404("No such action.")
    form = CriterionForm(request.POST, prefix=_prefix(criterion), initial=_initial(criterion))
    if not form.is_valid():
        return None, form, criterion
    fields = form.criterion_fields()
    changes = {name: value for name, value in fields.items() if getattr(criterion, name) != value}
    if not changes:
        return f"Criterion “{criterion.expression}” unchanged.", None, None
    updated = run_service(
        form,
        lambda: gate_services.gate_criterion_update(actor=actor, criterion=criterion, **changes),
    )
    if updated:
        return f"Criterion “{criterion.expression}” is now “{updated.expression}”.", None, None
    return None, form, criterion


@login_required
@require_http_methods(["GET", "POST"])
def gate_criteria(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    """The gate's criteria with their verdicts; add, change and remove for `set_criteria`."""
    project, gate = _project_and_gate(request.user, slug, phase)
    access = project_access(request.user, project)
    may_edit = access.can("set_criteria")
    refused_form, refused_criterion = None, None
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied("Your roles on this project do not allow setting gate criteria.")
        done, refused_form, refused_criterion = _post(request, gate)
        if done is not None:
            messages.success(request, done)
            return redirect("gate-criteria", project.slug, gate.phase)
    verdicts = {v.criterion.pk: v for v in readiness_of(gate).verdicts}
    rows = []
    for criterion in GateCriterion.objects.restrict(request.user).filter(gate=gate):
        form = None
        if may_edit and refused_criterion is not None and refused_criterion.pk == criterion.pk:
            form = refused_form  # the change just refused, with its errors
        elif may_edit:
            form = CriterionForm(prefix=_prefix(criterion), initial=_initial(criterion))
        rows.append({"criterion": criterion, "verdict": verdicts.get(criterion.pk), "form": form})
    add_form = None
    if may_edit:
        adding = refused_form is not None and refused_criterion is None
        add_form = refused_form if adding else CriterionForm(prefix=NEW)
    return render(
        request,
        "lifecycle/criteria.html",
        {
            "project": project,
            "gate": gate,
            "phases": list(project.gates.order_by("position")),
            "access": access,
            "rows": rows,
            "add_form": add_form,
            "may_edit": may_edit,
        },
        status=400 if refused_form is not None else 200,
    )
