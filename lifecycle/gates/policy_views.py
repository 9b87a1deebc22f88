"""The sign-off policy pages, for those who hold `governance.change_signoffpolicy`: every
version with the projects that keep it, and one version as its phase × risk tier table of
required roles. A draft (neither active nor kept by a project) is edited cell by cell; any
version can be copied to a new draft, and a complete draft activated for new projects.

Thin: parse the form, call one sign-off policy service, render. A refused change shows the page
again (400) with the error next to the input, or at the top when it concerns the whole version.
"""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from governance.admin_base import run_service
from governance.models import RiskTier, User
from governance.roles import Role
from governance.selectors import projects_for_user
from lifecycle import versioning
from lifecycle.gates import services as gate_services
from lifecycle.gates.forms import SIGNING_ROLES, NewVersionForm, RequirementForm
from lifecycle.gates.models import SignOffPolicy, SignOffRequirement
from lifecycle.phases import Phase

PERMISSION = "governance.change_signoffpolicy"


def _require_policy_admin(user: User) -> None:
    if not user.has_perm(PERMISSION):
        raise PermissionDenied("Only those who manage sign-off policies may open this page.")


@login_required
@require_GET
def signoff_policies(request: HttpRequest) -> HttpResponse:
    """Every policy version, the active one first, with the projects that keep each."""
    _require_policy_admin(request.user)
    policies = list(
        SignOffPolicy.objects.annotate(project_count=Count("projects")).order_by(
            "-is_active", "-created_at"
        )
    )
    visible: dict[int, list[Any]] = {}
    for project in projects_for_user(request.user).filter(signoff_policy__in=policies):
        visible.setdefault(project.signoff_policy_id, []).append(project)
    rows = [
        {
            "policy": policy,
            "projects": visible.get(policy.pk, []),
            "hidden": policy.project_count - len(visible.get(policy.pk, [])),
            "draft": not policy.is_active and policy.project_count == 0,
        }
        for policy in policies
    ]
    return render(request, "governance/policies.html", {"rows": rows})


def _table(policy: SignOffPolicy) -> list[dict[str, Any]]:
    """One row per phase, one cell per risk tier, each with its required roles."""
    found: dict[tuple[str, str], list[SignOffRequirement]] = {}
    for requirement in policy.requirements.all():
        found.setdefault((requirement.phase, requirement.risk_tier), []).append(requirement)
    rows = []
    for phase in Phase:
        cells = []
        for tier in RiskTier:
            requirements = found.get((phase.value, tier.value), [])
            held = {r.role for r in requirements}
            cells.append(
                {
                    "tier": tier,
                    "requirements": requirements,
                    "addable": [(v, label) for v, label in SIGNING_ROLES if v not in held],
                    "key": f"{phase.value}-{tier.value}",
                }
            )
        rows.append({"phase": phase, "cells": cells})
    return rows


def _policy_post(
    request: HttpRequest, policy: SignOffPolicy
) -> tuple[str | None, dict[str, forms.Form]]:
    """Handle one change: the version to show next, or the refused form under its name."""
    action = request.POST.get("action")
    actor = request.user
    if action == "new-version":
        version_form = NewVersionForm(request.POST)
        draft = version_form.is_valid() and run_service(
            version_form,
            lambda: gate_services.signoff_policy_create_version(
                actor=actor,
                source=policy,
                version=version_form.cleaned_data["version"],
                name=version_form.cleaned_data["name"],
            ),
        )
        return (draft.version, {}) if draft else (None, {"version_form": version_form})
    if action == "add-role":
        form: forms.Form = RequirementForm(request.POST)
        if form.is_valid():
            requirement = SignOffRequirement(policy=policy, **form.cleaned_data)
            run_service(
                form,
                lambda: gate_services.signoff_requirement_save(
                    actor=actor, requirement=requirement
                ),
            )
        return (None, {"add_form": form}) if form.errors else (policy.version, {})
    form = forms.Form(request.POST)
    if action == "remove-role":
        pk = request.POST.get("requirement", "")
        row = policy.requirements.filter(pk=pk).first() if pk.isascii() and pk.isdigit() else None
        if row is None:
            raise Http404("No such requirement in this policy.")
        run_service(
            form, lambda: gate_services.signoff_requirement_delete(actor=actor, requirement=row)
        )
    elif action == "activate":
        run_service(form, lambda: gate_services.signoff_policy_activate(actor=actor, policy=policy))
    else:
        raise Http404("No such action.")
    return (None, {"action_form": form}) if form.errors else (policy.version, {})


_DONE = {
    "new-version": "Draft version v{version} created: edit it, then activate it.",
    "add-role": "Required role added.",
    "remove-role": "Required role removed.",
    "activate": "Version v{version} is now active: new projects are reviewed under it.",
}


@login_required
@require_http_methods(["GET", "POST"])
def signoff_policy(request: HttpRequest, version: str) -> HttpResponse:
    """One policy version as its phase × risk tier table; editable while it is a draft."""
    _require_policy_admin(request.user)
    policy = SignOffPolicy.objects.filter(version=version).first()
    if policy is None:
        raise Http404("No such sign-off policy version.")
    refused: dict[str, forms.Form] = {}
    if request.method == "POST":
        action = request.POST.get("action", "")
        target, refused = _policy_post(request, policy)
        if target is not None:
            messages.success(request, _DONE[action].format(version=target))
            return redirect("signoff-policy", target)
    add_form = refused.get("add_form")
    return render(
        request,
        "governance/policy.html",
        {
            "policy": policy,
            "projects": policy.projects.count(),
            "editable": not versioning.in_use(policy),
            "table": _table(policy),
            "tiers": list(RiskTier),
            "version_form": refused.get("version_form") or NewVersionForm(),
            "add_form": add_form,
            "add_cell": (
                f"{add_form.data.get('phase')}-{add_form.data.get('risk_tier')}" if add_form else ""
            ),
            "action_form": refused.get("action_form"),
            "role_labels": dict(Role.choices),
        },
        status=400 if refused else 200,
    )
