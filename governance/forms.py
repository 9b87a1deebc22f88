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
