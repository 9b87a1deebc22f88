"""The admin site: Django's, with the own-password change checked under the login lockout and
routed through the audited service, and the rule for linking to it from the site's pages."""

from django.contrib import admin
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from governance.lockout import LockedOut, check_own_password
from governance.services import user_set_password


class AuditedPasswordChangeForm(PasswordChangeForm):
    def clean_old_password(self) -> str:
        # Django's check_password here would be a password oracle outside the lockout: the old
        # password is checked, counted and refused during a lock like a login.
        old_password = self.cleaned_data["old_password"]
        try:
            outcome = check_own_password(
                user=self.user, password=old_password, purpose="Password change"
            )
        except LockedOut as exc:
            raise ValidationError(str(exc), code="locked_out") from exc
        if outcome.problem is not None:
            raise ValidationError(
                self.error_messages["password_incorrect"], code="password_incorrect"
            )
        return old_password

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
