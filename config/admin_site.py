"""The admin site: Django's, with the own-password change routed through the audited service."""

from django.contrib import admin
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.urls import reverse

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
