from django.contrib import admin
from django.urls import include, path

from governance import views
from lifecycle import views as lifecycle_views

# Uploaded evidence is never served from MEDIA_URL: only through the permission-checked view.
urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path(
        "evidence/<int:pk>/download/",
        lifecycle_views.evidence_download,
        name="evidence-download",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz/", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
