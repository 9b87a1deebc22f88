"""The dashboard's filter form: it parses input; the selectors decide."""

from django import forms

from governance.models import RiskTier, TaskCategory
from lifecycle.gates.models import GateState
from lifecycle.phases import Phase


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
