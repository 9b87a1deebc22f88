"""The REST API, version 1 (namespace "api")."""

from typing import Any

from django.http import Http404
from django.urls import path, re_path
from rest_framework.request import Request
from rest_framework.response import Response

from audits.api import reports
from audits.api import views as audits
from config.api import schema  # noqa: F401 - registers the token scheme
from governance.api import views as governance
from governance.api.base import ApiView
from lifecycle.api import monitoring
from lifecycle.api import views as lifecycle

app_name = "api"


class NotFound(ApiView):
    """Any other path under the API: 404 in the API's error body (after authentication), not
    the site's HTML page. Catches path values the converters refuse, such as a non-numeric id."""

    schema = None  # not an endpoint

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise Http404

    options = http_method_not_allowed


P = "projects/<slug:slug>/"
G = P + "gates/<str:phase>/"

urlpatterns = [
    path("projects/", lifecycle.ProjectList.as_view(), name="project-list"),
    path(P, lifecycle.ProjectDetail.as_view(), name="project-detail"),
    path(P + "model-facts/", lifecycle.ModelFactsDetail.as_view(), name="model-facts"),
    path(P + "memberships/", governance.MembershipList.as_view(), name="membership-list"),
    path(
        P + "memberships/<int:pk>/", governance.MembershipDetail.as_view(), name="membership-detail"
    ),
    path(P + "model-versions/", lifecycle.ModelVersionList.as_view(), name="model-version-list"),
    path(
        P + "dataset-versions/", lifecycle.DatasetVersionList.as_view(), name="dataset-version-list"
    ),
    path(P + "items/", lifecycle.ChecklistItemList.as_view(), name="item-list"),
    path(P + "items/<str:key>/", lifecycle.ChecklistItemDetail.as_view(), name="item-detail"),
    path(P + "items/<str:key>/evidence/", lifecycle.EvidenceList.as_view(), name="evidence-list"),
    path(P + "items/<str:key>/comments/", lifecycle.CommentList.as_view(), name="comment-list"),
    path(
        P + "evidence/<int:pk>/download/",
        lifecycle.EvidenceDownload.as_view(),
        name="evidence-download",
    ),
    path(
        P + "evidence/<int:pk>/withdraw/",
        lifecycle.EvidenceWithdraw.as_view(),
        name="evidence-withdraw",
    ),
    path(P + "gates/", lifecycle.GateList.as_view(), name="gate-list"),
    path(G, lifecycle.GateDetail.as_view(), name="gate-detail"),
    path(G + "submit/", lifecycle.GateSubmit.as_view(), name="gate-submit"),
    path(G + "evidence/", lifecycle.GateEvidence.as_view(), name="gate-evidence"),
    path(G + "signoffs/", lifecycle.SignOffList.as_view(), name="signoff-list"),
    path(G + "criteria/", lifecycle.CriterionList.as_view(), name="criterion-list"),
    path(G + "criteria/<int:pk>/", lifecycle.CriterionDetail.as_view(), name="criterion-detail"),
    path(P + "evaluation-runs/", lifecycle.EvaluationRunList.as_view(), name="run-list"),
    path(
        P + "evaluation-runs/<int:pk>/", lifecycle.EvaluationRunDetail.as_view(), name="run-detail"
    ),
    path(P + "monitoring/", monitoring.MonitoringOverview.as_view(), name="monitoring"),
    path(P + "monitoring/plan/", monitoring.MonitoringPlanDetail.as_view(), name="monitoring-plan"),
    path(
        P + "monitoring/batches/",
        monitoring.MonitoringBatchList.as_view(),
        name="monitoring-batch-list",
    ),
    path(
        P + "monitoring/batches/<int:number>/",
        monitoring.MonitoringBatchDetail.as_view(),
        name="monitoring-batch-detail",
    ),
    path(P + "incidents/", monitoring.IncidentList.as_view(), name="incident-list"),
    path(
        P + "incidents/<int:number>/", monitoring.IncidentDetail.as_view(), name="incident-detail"
    ),
    path(
        P + "incidents/<int:number>/notes/",
        monitoring.IncidentNoteList.as_view(),
        name="incident-note-list",
    ),
    path(P + "feedback/", monitoring.FeedbackList.as_view(), name="feedback-list"),
    path(P + "audit-events/", audits.AuditEventList.as_view(), name="audit-event-list"),
    path(P + "audit-events/export/", audits.AuditExport.as_view(), name="audit-export"),
    path(P + "reports/", reports.ReportList.as_view(), name="report-list"),
    path(P + "reports/<int:pk>/", reports.ReportDetail.as_view(), name="report-detail"),
    path(
        P + "reports/<int:pk>/download/", reports.ReportDownload.as_view(), name="report-download"
    ),
    path("report-key/", reports.ReportKey.as_view(), name="report-key"),
    # Last: any other path ending in a slash answers the API's JSON 404 (a path without the
    # slash is redirected to it first, by APPEND_SLASH).
    re_path(r"^(?:[^/]*/)*$", NotFound.as_view()),
]
