"""Forms of the account pages: they parse input; the services decide."""

import datetime

from django import forms
from django.utils import timezone


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “CI pipeline”.")
    expires_in_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=3650,
        label="Expires in (days)",
        help_text="Empty: never expires.",
    )
    read_only = forms.BooleanField(required=False, help_text="Can read but not change anything.")
    projects = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every project you hold a role on.",
    )

    def __init__(self, *args, projects, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["projects"].queryset = projects

    def expires_at(self) -> datetime.datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + datetime.timedelta(days=days) if days else None


def _code_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=32,
        help_text=help_text,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "spellcheck": "false",
                "autocapitalize": "off",
                "class": "narrow",
            }
        ),
    )


def _password_field() -> forms.CharField:
    return forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class TotpConfirmForm(forms.Form):
    """The first code from the newly added authenticator app, which proves it is set up."""

    code = _code_field("Code from the app", "The 6-digit code your app shows now.")


class RecoveryCodesForm(forms.Form):
    """New recovery codes replace the old ones: the password is asked again."""

    password = _password_field()


class TotpRemoveForm(forms.Form):
    """Removing the authenticator app: the password and a current code (or a recovery code)."""

    password = _password_field()
    code = _code_field(
        "Code from the app or a recovery code", "A recovery code works if the app is lost."
    )
