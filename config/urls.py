from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer

from audits import views as audits_views
from audits.reports import views as report_views
from config import views as site_views
from governance import notification_views, views
from lifecycle import views as lifecycle_views
from lifecycle.gates import policy_views
from lifecycle.gates import views as gate_views
from lifecycle.monitoring import views as monitoring_views
from lifecycle.projects import views as project_views


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, for an API token or a signed-in browser unless API_DOCS_PUBLIC."""

    def get_permissions(self) -> list[BasePermission]:
        # Read per request, so that the setting can change without reloading the URLs.
        return [AllowAny() if settings.API_DOCS_PUBLIC else IsAuthenticated()]

    def handle_exception(self, exc: Exception) -> HttpResponse:
        response = super().handle_exception(exc)
        # A refusal is in the API's JSON error body, whatever schema format was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


# The split view serves its start-up script as a file: no inline script for the CSP to allow.
_swagger = SpectacularSwaggerSplitView.as_view(url_name="api-schema")


def api_docs(request: HttpRequest) -> HttpResponse:
    """The Swagger UI page: the login page first for an anonymous browser, unless
    API_DOCS_PUBLIC."""
    if not (settings.API_DOCS_PUBLIC or request.user.is_authenticated):
        return redirect_to_login(request.get_full_path())
    return _swagger(request)


# Uploaded evidence is never served from MEDIA_URL: only through the permission-checked view.
P = "projects/<slug:slug>/"

urlpatterns = [
    path("", project_views.home, name="home"),
    path(P, project_views.project_overview, name="project-detail"),
    path(P + "phases/<str:phase>/", lifecycle_views.phase_page, name="phase"),
    path(P + "items/<str:key>/status/", lifecycle_views.item_status, name="item-status"),
    path(P + "items/<str:key>/assign/", lifecycle_views.item_assign, name="item-assign"),
    path(P + "items/<str:key>/evidence/", lifecycle_views.item_evidence, name="item-evidence"),
    path(P + "items/<str:key>/comments/", lifecycle_views.item_comment, name="item-comment"),
    path(
        P + "evidence/<int:pk>/withdraw/",
        lifecycle_views.evidence_withdraw,
        name="evidence-withdraw",
    ),
    path(P + "gates/<str:phase>/submit/", lifecycle_views.gate_submit_view, name="gate-submit"),
    path(P + "gates/<str:phase>/sign/", lifecycle_views.gate_sign_view, name="gate-sign"),
    path(
        P + "gates/<str:phase>/evidence/", lifecycle_views.gate_evidence_view, name="gate-evidence"
    ),
    path(P + "gates/<str:phase>/criteria/", gate_views.gate_criteria, name="gate-criteria"),
    path(
        P + "gates/<str:phase>/evaluations/",
        lifecycle_views.evaluation_upload,
        name="evaluation-upload",
    ),
    path(P + "runs/<int:pk>/", lifecycle_views.run_page, name="run"),
    path(P + "monitoring/", monitoring_views.monitoring_page, name="monitoring"),
    path(P + "monitoring/plan/", monitoring_views.monitoring_plan, name="monitoring-plan"),
    path(
        P + "monitoring/batches/",
        monitoring_views.monitoring_batch_upload,
        name="monitoring-batch-upload",
    ),
    path(P + "incidents/new/", monitoring_views.incident_report, name="incident-report"),
    path(P + "incidents/<int:number>/", monitoring_views.incident_page, name="incident"),
    path(P + "audit/", audits_views.timeline, name="audit-timeline"),
    path(P + "facts/", project_views.model_facts, name="model-facts"),
    path(P + "reports/", report_views.reports_page, name="reports"),
    path(P + "reports/hti1/", report_views.hti1_page, name="report-hti1"),
    path(P + "reports/<int:pk>/", report_views.report_page, name="report"),
    path(P + "reports/<int:pk>/download/", report_views.report_download, name="report-download"),
    path(
        "evidence/<int:pk>/download/",
        lifecycle_views.evidence_download,
        name="evidence-download",
    ),
    path("reports/key/", report_views.report_key_page, name="report-key"),
    path("policies/", policy_views.signoff_policies, name="signoff-policies"),
    path("policies/<str:version>/", policy_views.signoff_policy, name="signoff-policy"),
    path("account/", views.account, name="account"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path(
        "account/notifications/",
        notification_views.notification_settings,
        name="account-notifications",
    ),
    # Only log in and out: password changes go through the audited user services.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz/", site_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
]
