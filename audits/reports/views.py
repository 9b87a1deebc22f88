"""The Reports pages: request and list a project's compliance reports, look at one (its seal
verified again), download it; the HTI-1 attributes as a page; the public report key."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from audits.models import Report, ReportFormat, ReportKind, ReportStatus
from audits.reports import chai, hti1, keys, selectors, services
from audits.reports.downloads import report_file_response
from audits.reports.hti1 import hti1_attributes
from audits.reports.seal_format import fingerprint_of
from audits.reports.verify import describe
from governance.admin_base import run_service
from governance.models import Project
from governance.permissions import Access, project_access
from governance.selectors import project_get_for_user
from lifecycle.phases import Phase
from lifecycle.projects.facts import FACTS_BY_KEY

# What a report's `missing_facts` keys stand for when they are not model facts.
_NOT_FACTS = {
    **chai.OTHER_MISSING,
    hti1.DEVELOPMENT_EVALUATION: "A designated evaluation run of the development gate",
    hti1.DEVELOPMENT_FAIRNESS_EVALUATION: "Fairness results in the development gate's "
    "designated evaluation run",
    "intended_use": "Intended use (the project's registration)",
    "intended_users": "Intended users (the project's registration)",
}


def missing_labels(keys: list[str]) -> list[tuple[str, str]]:
    """(key, what it is) for each fact or piece of evidence a report could not fill."""
    return [
        (key, FACTS_BY_KEY[key].label if key in FACTS_BY_KEY else _NOT_FACTS.get(key, key))
        for key in keys
    ]


class ReportRequestForm(forms.Form):
    kind = forms.ChoiceField(choices=ReportKind.choices, widget=forms.RadioSelect)
    format = forms.ChoiceField(
        choices=[("", "Default for the kind"), *ReportFormat.choices], required=False
    )
    gate = forms.ChoiceField(
        choices=[("", "All gates"), *Phase.choices],
        required=False,
        help_text="Dossier only: the record of one gate's decision.",
    )
    since = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Audit trail only: first day (UTC).",
    )
    until = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Audit trail only: last day (UTC), inclusive.",
    )


def _project(request: HttpRequest, slug: str) -> tuple[Project, Access]:
    try:
        project = project_get_for_user(request.user, slug)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None
    return project, project_access(request.user, project)


def _reports_project(request: HttpRequest, slug: str) -> tuple[Project, Access]:
    project, access = _project(request, slug)
    if not selectors.can_export(request.user, project):
        raise PermissionDenied(
            "Your roles on this project do not include exporting compliance reports."
        )
    return project, access


@login_required
@require_http_methods(["GET", "POST"])
def reports_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Generate a report and follow its job; every report of the project, newest first."""
    project, access = _reports_project(request, slug)
    form = ReportRequestForm(request.POST or None, initial={"kind": ReportKind.DOSSIER})
    if request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        report = run_service(
            form,
            lambda: services.report_request(
                actor=request.user,
                project=project,
                kind=values["kind"],
                file_format=values["format"],
                gate_phase=values["gate"],
                since=values["since"],
                until=values["until"],
            ),
        )
        if report is not None:
            report.refresh_from_db()
            if report.status == ReportStatus.SUCCEEDED:
                messages.success(request, f"{report} is ready.")
            elif report.status == ReportStatus.FAILED:
                messages.error(request, f"{report} failed: {report.error}")
            else:
                messages.success(request, f"{report} requested; it is being generated.")
            return redirect("reports", project.slug)
    reports = selectors.project_reports(request.user, project)
    page = Paginator(reports, 25).get_page(request.GET.get("page"))
    working = any(r.status in (ReportStatus.QUEUED, ReportStatus.RUNNING) for r in page)
    return render(
        request,
        "reports/reports.html",
        {
            "project": project,
            "access": access,
            "form": form,
            "page": page,
            "working": working,
            "formats": services.FORMATS,
        },
        status=400 if form.errors else 200,
    )


def _report(request: HttpRequest, project: Project, pk: int) -> Report:
    report = selectors.project_reports(request.user, project).filter(pk=pk).first()
    if report is None:
        raise Http404("No such report.")
    report.project = project
    return report


@login_required
def report_page(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """One report: what it covers, its seal checked again now, its download."""
    project, access = _reports_project(request, slug)
    report = _report(request, project, pk)
    problem = services.stored_report_problem(report)
    return render(
        request,
        "reports/report.html",
        {
            "project": project,
            "access": access,
            "report": report,
            "problem": problem,
            "seal_lines": describe(report.seal) if report.seal else [],
            "missing": missing_labels(report.missing_facts),
            "fingerprint": fingerprint_of(report.seal["public_key"]) if report.seal else "",
        },
    )


@login_required
@require_GET  # not HEAD: each download is recorded
def report_download(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """The sealed file as an attachment; recorded in the audit trail."""
    project, _ = _reports_project(request, slug)
    report = _report(request, project, pk)
    try:
        handle = services.report_download(actor=request.user, report=report)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("report", project.slug, report.pk)
    return report_file_response(report, handle)


@login_required
def hti1_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The 31 HTI-1 source attributes of the project, readable; the JSON is a report."""
    project, access = _project(request, slug)
    attributes = hti1_attributes(project)
    return render(
        request,
        "reports/hti1.html",
        {
            "project": project,
            "access": access,
            "attributes": attributes,
            "can_export": selectors.can_export(request.user, project),
        },
    )


def report_key_page(request: HttpRequest) -> HttpResponse:
    """The installation's public report key, for auditors verifying reports offline. Public:
    a key that verifies is no secret."""
    return render(request, "reports/key.html", {"key": keys.published()})
