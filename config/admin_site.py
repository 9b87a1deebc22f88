"""The admin site: Django's, with the own-password change routed through the audited service,
and the rule for linking to it from the site's pages."""

from django.contrib import admin
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from governance.services import user_set_password


class AuditedPasswordChangeForm(PasswordChangeForm):
    def save(self, commit: bool = True):
        self.user = user_set_password(
            actor=self.user, user=self.user, password=self.cleaned_data["new_password1"]
        )
        return self.user


class GovernanceAdminSite(admin.AdminSite):
    site_header = "LLM governance — administration"
    site_title = "LLM governance"

    def password_change(self, request, extra_context=None):
        request.current_app = self.name
        return PasswordChangeView.as_view(
            form_class=AuditedPasswordChangeForm,
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
        )(request)


def may_administer(request: HttpRequest) -> bool:
    """Whether the admin offers `request.user` anything: its index lists at least one model
    they may view, add or change (each ModelAdmin answers as its services would)."""
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return False
    return bool(admin.site.get_app_list(request))


def administration(request: HttpRequest) -> dict[str, object]:
    """Template context processor: `may_administer`, asked only when a page shows the link."""
    return {"may_administer": SimpleLazyObject(lambda: may_administer(request))}
