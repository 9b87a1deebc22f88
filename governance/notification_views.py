"""The page where users turn their own e-mail notifications on or off."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from governance.admin_base import add_service_errors
from governance.models import User
from governance.notification_settings import notification_settings_update


class NotificationSettingsForm(forms.Form):
    email_notifications = forms.BooleanField(
        required=False,
        label="E-mail me about gates and items that need me",
        help_text="When a gate needs my signature, when a gate I lead is approved, sent back or "
        "reopened, and when a checklist item is assigned to me.",
    )


@login_required
def notification_settings(request: HttpRequest) -> HttpResponse:
    """Show the user's notification setting and save a change (then back here, by GET)."""
    user = request.user
    assert isinstance(user, User)  # login_required
    initial = {"email_notifications": user.email_notifications}
    # Bound on every POST: an unticked box sends nothing, and that empty form means "off".
    data = request.POST if request.method == "POST" else None
    form = NotificationSettingsForm(data, initial=initial)
    if form.is_bound and form.is_valid():
        wanted = form.cleaned_data["email_notifications"]
        try:
            notification_settings_update(actor=user, email_notifications=wanted)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"E-mail notifications are now {'on' if wanted else 'off'}.")
            return redirect("account-notifications")
    return render(request, "governance/notifications.html", {"form": form})
