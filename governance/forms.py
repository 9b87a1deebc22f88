"""Forms of the account pages: they parse input; the services decide."""

import datetime

from django import forms
from django.utils import timezone

from governance.models import RiskTier, TaskCategory
from lifecycle.models import GateState
from lifecycle.phases import Phase


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


class DashboardFilterForm(forms.Form):
    """Search and filters of the dashboard (GET; every field optional)."""

    q = forms.CharField(required=False, label="Search")
    current_phase = forms.ChoiceField(
        required=False, label="Phase", choices=[("", "Any phase"), *Phase.choices]
    )
    state = forms.ChoiceField(
        required=False, label="Gate state", choices=[("", "Any state"), *GateState.choices]
    )
    risk_tier = forms.ChoiceField(
        required=False, label="Risk tier", choices=[("", "Any risk"), *RiskTier.choices]
    )
    task_category = forms.ChoiceField(
        required=False,
        label="Task category",
        choices=[("", "Any category"), *TaskCategory.choices],
    )
