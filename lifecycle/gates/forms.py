"""Forms of the criteria and sign-off policy pages: they parse what was typed; the gate
services decide whether it may be saved."""

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from governance.models import RiskTier
from governance.roles import Role
from lifecycle.gates.expressions import EXAMPLE, parse_criterion
from lifecycle.phases import Phase

# Roles whose approval a policy may require (the requirement table's check constraint).
SIGNING_ROLES = [
    (role.value, role.label)
    for role in Role
    if role not in (Role.AUDITOR, Role.COMMITTEE_MEMBER, Role.PROJECT_LEAD)
]


class CriterionForm(forms.Form):
    """One criterion: its expression, whether it is required, and its minimum evidence."""

    # The criterion services name the parsed fields; all of them were typed in `expression`.
    service_fields = {
        "metric": "expression",
        "scope": "expression",
        "group_attribute": "expression",
        "bound": "expression",
        "comparator": "expression",
        "threshold": "expression",
    }

    expression = forms.CharField(
        label="Criterion",
        max_length=300,
        help_text=f"e.g. {EXAMPLE}, demographic_parity_difference(sex) <= 0.1 or "
        "worst_group:recall(sex) >= 0.8",
    )
    required = forms.BooleanField(
        label="Required for approval (otherwise advisory)", required=False, initial=True
    )
    min_records = forms.IntegerField(
        label="Minimum records overall",
        required=False,
        min_value=1,
        help_text="Fewer records than this: insufficient evidence, never pass. Empty: no minimum.",
    )
    min_group_records = forms.IntegerField(
        label="Minimum records per subgroup",
        required=False,
        min_value=1,
        help_text="A subgroup with fewer records than this: insufficient evidence. Empty: none.",
    )

    def clean_expression(self) -> str:
        text: str = self.cleaned_data["expression"]
        self.parsed = parse_criterion(text)
        return text

    def criterion_fields(self) -> dict[str, Any]:
        """Every field of the criterion, as the criterion services take them."""
        return {
            **self.parsed,
            "required": self.cleaned_data["required"],
            "min_records": self.cleaned_data["min_records"],
            "min_group_records": self.cleaned_data["min_group_records"],
        }


class RequirementForm(forms.Form):
    """Add one required role to a cell (phase × risk tier) of a draft policy."""

    phase = forms.ChoiceField(choices=Phase.choices)
    risk_tier = forms.ChoiceField(choices=RiskTier.choices)
    role = forms.ChoiceField(label="Role", choices=SIGNING_ROLES)


class NewVersionForm(forms.Form):
    """A new draft policy version copied from the one shown."""

    version = forms.CharField(
        label="New version", max_length=40, help_text="e.g. 2 or 2026-07: unique."
    )
    name = forms.CharField(
        label="Name", max_length=200, required=False, help_text="Empty: keep this version's name."
    )

    def clean_version(self) -> str:
        version: str = self.cleaned_data["version"].strip()
        if "/" in version:
            raise ValidationError("A version cannot contain “/” (it is part of the page address).")
        return version
