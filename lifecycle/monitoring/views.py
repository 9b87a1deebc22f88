"""The monitoring pages: the project's monitoring page (plan, batches, trends, drift,
incidents), the plan form, the batch upload, the incident page and the safety report.

Thin adapters: parse with the forms of `lifecycle.monitoring.forms`, call one monitoring
service through `run_service`, read through `lifecycle.monitoring.selectors`, render. Controls
a user may not use are not shown; the services refuse them anyway. A refused form is answered
with its page again (400) at the form's own URL, which the page puts back in the address bar
(`canonical_url`, docs/ui.md).
"""

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from governance.admin_base import run_service
from governance.models import Project, User
from governance.permissions import Access, project_access
from governance.roles import Role
from governance.selectors import memberships_of_project, project_get_for_user
from lifecycle.evaluations.charts import Chart
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.http import post_only
from lifecycle.monitoring import selectors, services
from lifecycle.monitoring.charts import trend_chart
from lifecycle.monitoring.forms import (
    BatchUploadForm,
    IncidentNoteForm,
    IncidentReportForm,
    IncidentUpdateForm,
    MonitoringPlanForm,
)
from lifecycle.monitoring.models import Incident
from lifecycle.monitoring.trends import Trend


def _user(request: HttpRequest) -> User:
    # login_required comes first on every view here: never anonymous; narrows the type.
    if not isinstance(request.user, User):
        raise PermissionDenied
    return request.user


def _project(user: User, slug: str) -> Project:
    try:
        return project_get_for_user(user, slug)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


def monitoring_of(request: HttpRequest, slug: str, **_: Any) -> str:
    """The monitoring page: where the upload and report forms live (`post_only`'s `back`)."""
    return reverse("monitoring", args=[slug])


def _members(project: Project) -> dict[User, str]:
    """Who may own an incident, with their roles: members with a role other than auditor
    (who reads only; the service refuses them as owners)."""
    roles: dict[User, list[str]] = {}
    for membership in memberships_of_project(project):
        if membership.role != Role.AUDITOR:
            roles.setdefault(membership.user, []).append(membership.get_role_display())
    return {user: ", ".join(labels) for user, labels in roles.items()}


def _nav(project: Project, access: Access) -> dict[str, Any]:
    """What the project tabs need (templates/governance/partials/project_nav.html)."""
    return {
        "project": project,
        "access": access,
        "phases": list(project.gates.order_by("position")),
    }


def _may_upload(access: Access) -> bool:
    # A batch registers a dataset version and starts a run: both permissions
    # (`monitoring_batch_submit` checks them).
    return access.can("upload_evaluation") and access.can("manage_versions")


def _trend_charts(project: Project, trends: list[Trend]) -> list[Chart]:
    """One chart per watched metric x cohort: those signalling on the latest batch first, then
    those that signalled earlier, then the rest, each group in the trends' own order."""
    ordered = sorted(
        trends,
        key=lambda t: (not t.latest_signals, not any(p.signals for p in t.points)),
    )
    return [trend_chart(t, "monitoring-" + json.dumps([project.slug, *t.key])) for t in ordered]


# --- The monitoring page -----------------------------------------------------------------------


@login_required
def monitoring_page(
    request: HttpRequest,
    slug: str,
    *,
    upload_form: BatchUploadForm | None = None,
    report_form: IncidentReportForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """Plan, next review and batch due, batches, trends, drift and incidents of one project."""
    user = _user(request)
    project = _project(user, slug)
    access = project_access(user, project)
    overview = selectors.monitoring_overview(project)
    deployed = overview.deployed
    may_upload = _may_upload(access) and deployed and overview.plan is not None
    may_report = access.can("comment")
    # The forms a user may use: a refused one with its input and errors, else an empty one.
    # A refusal of a form the user was never shown is still said, at the top of the page.
    refused = {"upload": upload_form, "report": report_form}
    if may_upload:
        upload_form = upload_form or BatchUploadForm(
            model_versions=project.model_versions.all(), period_start=overview.next_batch_due
        )
    else:
        upload_form = None
    report_form = (
        (report_form or IncidentReportForm(members=_members(project))) if may_report else None
    )
    return render(
        request,
        "monitoring/monitoring.html",
        {
            **_nav(project, access),
            "overview": overview,
            "plan": overview.plan,
            "deployed": deployed,
            "may_edit_plan": access.can("set_criteria"),
            "may_upload": may_upload,
            "upload_form": upload_form,
            "report_form": report_form,
            "refused": refused,
            "charts": _trend_charts(project, overview.trends),
            "canonical_url": monitoring_of(request, slug) if request.method == "POST" else "",
        },
        status=status,
    )


# --- The plan ----------------------------------------------------------------------------------


def _baseline_keys(runs: list[EvaluationRun]) -> tuple[list[str], list[str]]:
    """The metrics and group attributes any candidate baseline run measured: what a plan can
    watch (the service refuses what the chosen baseline lacks, and says what it has)."""
    metrics: set[str] = set()
    cohorts: set[str] = set()
    for run in runs:  # a handful: the evidence of two gates
        measured, groups = selectors.baseline_result_keys(run)
        metrics |= measured
        cohorts |= groups
    return sorted(metrics), sorted(cohorts)


@login_required
@require_http_methods(["GET", "POST"])
def monitoring_plan(request: HttpRequest, slug: str) -> HttpResponse:
    """The plan form, for the roles that set gate policy (`set_criteria`)."""
    user = _user(request)
    project = _project(user, slug)
    access = project_access(user, project)
    if not access.can("set_criteria"):
        raise PermissionDenied(
            "Your roles on this project do not allow changing its monitoring plan."
        )
    plan = selectors.monitoring_plan_of(project)
    runs = selectors.baseline_candidates(project)
    metrics, cohorts = _baseline_keys(runs)
    form = MonitoringPlanForm(
        initial=MonitoringPlanForm.initial_of(plan), runs=runs, metrics=metrics, cohorts=cohorts
    )
    if request.method == "POST":
        form = MonitoringPlanForm(request.POST, runs=runs, metrics=metrics, cohorts=cohorts)
        if form.is_valid():
            saved = run_service(
                form,
                lambda: services.monitoring_plan_save(
                    actor=user, project=project, **form.service_arguments()
                ),
            )
            if saved is not None:
                messages.success(
                    request,
                    "Monitoring plan saved: every new batch is compared with run "
                    f"{saved.baseline_run.number}.",
                )
                return redirect("monitoring", project.slug)
    return render(
        request,
        "monitoring/plan.html",
        {**_nav(project, access), "plan": plan, "form": form, "runs": runs},
        status=400 if form.errors else 200,
    )


# --- Batches -----------------------------------------------------------------------------------


@login_required
@post_only(back=monitoring_of)
def monitoring_batch_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """Check the file (outside any transaction), then submit the batch; a refusal shows the
    monitoring page again with what was refused and where (a records file: its line and
    field under the file input)."""
    user = _user(request)
    project = _project(user, slug)
    form = BatchUploadForm(request.POST, request.FILES, model_versions=project.model_versions.all())
    batch = None
    if form.is_valid():
        data = form.cleaned_data
        arguments = {
            "project": project,
            "upload": data["file"],
            "period_start": data["period_start"],
            "model_version": data["model_version"],
        }
        checked = run_service(form, lambda: services.monitoring_batch_check(user=user, **arguments))
        if checked is not None:
            batch = run_service(
                form,
                lambda: services.monitoring_batch_submit(actor=user, checked=checked, **arguments),
            )
    if batch is None:
        return monitoring_page(request, slug, upload_form=form, status=400)
    messages.success(
        request,
        f"Batch {batch.number} ({batch.period_start:%Y-%m-%d} to {batch.period_end:%Y-%m-%d}) "
        "uploaded: it is evaluated in the background, then compared with the baseline.",
    )
    return redirect("monitoring", project.slug)


# --- Incidents ---------------------------------------------------------------------------------


@login_required
@post_only(back=monitoring_of)
def incident_report(request: HttpRequest, slug: str) -> HttpResponse:
    """A clinical safety report by a member who may comment: opens an incident."""
    user = _user(request)
    project = _project(user, slug)
    form = IncidentReportForm(request.POST, members=_members(project))
    incident = None
    if form.is_valid():
        data = form.cleaned_data
        incident = run_service(
            form,
            lambda: services.incident_report(
                actor=user,
                project=project,
                title=data["title"],
                description=data["description"],
                severity=data["severity"],
                owner=data["owner"],
            ),
        )
    if incident is None:
        return monitoring_page(request, slug, report_form=form, status=400)
    messages.success(request, f"Incident {incident.number} reported: {incident.title}")
    return redirect("incident", project.slug, incident.number)


def _incident_post(
    request: HttpRequest, user: User, incident: Incident, members: dict[User, str]
) -> tuple[str | None, IncidentUpdateForm | None, IncidentNoteForm | None]:
    """Handle the update or the note: the success message, or the refused form."""
    action = request.POST.get("action")
    if action == "update":
        update = IncidentUpdateForm(request.POST, incident=incident, members=members)
        if update.is_valid():
            done = run_service(
                update,
                lambda: services.incident_update(
                    actor=user, incident=incident, **update.service_arguments()
                ),
            )
            if done is not None:
                return f"Incident {incident.number} updated.", None, None
        return None, update, None
    if action == "note":
        note_form = IncidentNoteForm(request.POST)
        if note_form.is_valid():
            added = run_service(
                note_form,
                lambda: services.incident_note_add(
                    actor=user, incident=incident, text=note_form.cleaned_data["text"]
                ),
            )
            if added is not None:
                return "Note added to the timeline.", None, None
        return None, None, note_form
    raise Http404("No such action.")


@login_required
@require_http_methods(["GET", "POST"])
def incident_page(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """An incident: its details, its timeline, triage for `manage_incidents` and a note for
    every member who may comment."""
    user = _user(request)
    project = _project(user, slug)
    try:
        incident = selectors.incident_get(project, number)
    except Incident.DoesNotExist:
        raise Http404("No such incident.") from None
    access = project_access(user, project)
    members = _members(project)
    update_form: IncidentUpdateForm | None = None
    note_form: IncidentNoteForm | None = None
    if request.method == "POST":
        done, update_form, note_form = _incident_post(request, user, incident, members)
        if done is not None:
            messages.success(request, done)
            return redirect("incident", project.slug, incident.number)
    refused = update_form or note_form
    # The forms a user may use: the refused one with its input and errors, else an empty one.
    # A refusal of a form the user was never shown is still said, at the top of the page.
    update_form = (
        (update_form or IncidentUpdateForm(incident=incident, members=members))
        if access.can("manage_incidents")
        else None
    )
    note_form = (note_form or IncidentNoteForm()) if access.can("comment") else None
    return render(
        request,
        "monitoring/incident.html",
        {
            **_nav(project, access),
            "incident": incident,
            "timeline": selectors.incident_timeline(incident),
            "update_form": update_form,
            "note_form": note_form,
            "refused": refused,
        },
        status=400 if refused is not None else 200,
    )
