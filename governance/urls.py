from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from governance import views
from lifecycle import views as lifecycle_views

# Uploaded evidence is never served from MEDIA_URL: only through the permission-checked view.
urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path(
        "projects/<slug:slug>/gates/<str:phase>/submit/",
        lifecycle_views.gate_submit_view,
        name="gate-submit",
    ),
    path(
        "projects/<slug:slug>/gates/<str:phase>/sign/",
        lifecycle_views.gate_sign_view,
        name="gate-sign",
    ),
    path(
        "evidence/<int:pk>/download/",
        lifecycle_views.evidence_download,
        name="evidence-download",
    ),
    # Only log in and out: password changes go through the audited user services.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("healthz/", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("governance.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
