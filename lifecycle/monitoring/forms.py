"""Forms of the monitoring pages: they parse input; the monitoring services decide.

The plan form takes its numeric fields from the model (`MonitoringPlan`'s own validators,
labels and help), so the bounds a page offers are the bounds the service keeps: one rule in one
place. Choices (baseline runs, metrics, cohorts, members) are given by the view from the
selectors.
"""

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from django import forms
from django.db import models

from governance.models import User
from lifecycle.evaluations.models import EvaluationRun, ModelVersion
from lifecycle.monitoring.models import (
    Incident,
    IncidentStatus,
    MonitoringPlan,
    Severity,
)

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")

# The plan's settings read from the model: (field name, widget attributes).
_PLAN_SETTINGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("period_days", {}),
    ("review_interval_days", {}),
    ("resamples", {}),
    ("cusum_k", {"step": "0.1"}),
    ("cusum_h", {"step": "0.1"}),
    ("psi_alert", {"step": "0.01"}),
)


def run_label(run: EvaluationRun) -> str:
    """ "Run 4 (Model development and validation): v1 on d1, 400 records" """
    return (
        f"Run {run.number} ({run.gate.get_phase_display()}): {run.model_version.label} on "
        f"{run.dataset_version.label}, {run.n_records or 0:,} records"
    )


def _plan_field(name: str) -> "models.Field[Any, Any]":
    field = MonitoringPlan._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _model_field(name: str, attrs: dict[str, str]) -> forms.Field:
    field = _plan_field(name).formfield()
    assert field is not None
    field.widget.attrs.update(attrs)
    return field


def _choice_field(form: forms.Form, name: str) -> forms.ChoiceField:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    return field


class MonitoringPlanForm(forms.Form):
    """The monitoring plan: baseline run, watched metrics and cohorts, period and alert rules."""

    baseline_run = forms.TypedChoiceField(
        coerce=int,
        label="Baseline run",
        help_text="Every batch is compared with this run: the approved evidence of the "
        "development or deployment gate.",
    )
    metrics = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        label="Metrics watched",
        help_text="Computed on every batch and followed as trends. Only metrics the baseline "
        "run has results for can be compared.",
    )
    cohorts = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Cohorts watched",
        help_text="The group attributes whose subgroups are followed; none ticked: every "
        "attribute the batches carry.",
    )
    starts_on = forms.DateField(
        widget=DATE,
        label="First period starts on",
        help_text="The first day of the first monitoring period; each batch covers one period.",
    )

    def __init__(
        self,
        *args: Any,
        runs: Sequence[EvaluationRun],
        metrics: Iterable[str],
        cohorts: Iterable[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.runs = {run.pk: run for run in runs}
        _choice_field(self, "baseline_run").choices = [(run.pk, run_label(run)) for run in runs]
        _choice_field(self, "metrics").choices = [(m, m) for m in metrics]
        _choice_field(self, "cohorts").choices = [(c, c) for c in cohorts]
        for name, attrs in _PLAN_SETTINGS:
            self.fields[name] = _model_field(name, attrs)

    @classmethod
    def initial_of(cls, plan: MonitoringPlan | None) -> dict[str, Any]:
        """The form's starting values: the plan's, or the model's defaults for a new plan."""
        if plan is None:
            return {name: _plan_field(name).get_default() for name, _ in _PLAN_SETTINGS}
        return {
            "baseline_run": plan.baseline_run_id,
            "metrics": list(plan.metrics),
            "cohorts": list(plan.cohorts),
            "starts_on": plan.starts_on,
            **{name: getattr(plan, name) for name, _ in _PLAN_SETTINGS},
        }

    def service_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `monitoring_plan_save` (after `is_valid()`)."""
        data = self.cleaned_data
        return {
            "baseline_run": self.runs[data["baseline_run"]],
            "metrics": list(data["metrics"]),
            "cohorts": list(data["cohorts"]),
            "starts_on": data["starts_on"],
            **{name: data[name] for name, _ in _PLAN_SETTINGS},
        }


class BatchUploadForm(forms.Form):
    """One period's monitoring records, sent from the browser (the API takes the same)."""

    file = forms.FileField(
        label="Records file (.jsonl or .csv)",
        help_text="The period's records in the usual record format (docs/metrics.md); check "
        "them first with manage.py drift against the baseline's file.",
    )
    period_start = forms.DateField(
        widget=DATE,
        label="Period starts on",
        help_text="The first day of the period the records cover (a period boundary of the plan).",
    )
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        empty_label="The baseline run's model version",
        label="Model version",
    )

    def __init__(
        self, *args: Any, model_versions: Any, period_start: date | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["model_version"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = model_versions
        if period_start is not None:
            self.fields["period_start"].initial = period_start


class _MemberChoice(forms.ModelChoiceField):  # type: ignore[type-arg]
    """A member by name, with their roles on the project ("Kayla Harvey — Project lead")."""

    def __init__(self, *args: Any, roles: dict[int, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.roles = roles

    def label_from_instance(self, obj: User) -> str:
        name = obj.get_full_name() or obj.username
        return f"{name} — {self.roles[obj.pk]}" if self.roles.get(obj.pk) else name


def _members_field(members: dict[User, str], empty_label: str) -> "forms.ModelChoiceField[User]":
    return _MemberChoice(
        queryset=User.objects.filter(pk__in=[m.pk for m in members]).order_by(
            "last_name", "username"
        ),
        roles={member.pk: roles for member, roles in members.items()},
        required=False,
        empty_label=empty_label,
        label="Owner",
        help_text="Who sees it through to resolution.",
    )


class IncidentReportForm(forms.Form):
    """A clinical safety report: an incident opened by hand."""

    title = forms.CharField(max_length=200, label="What happened, in one line")
    description = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Details",
        help_text="What was seen, where and when; no patient identifiers.",
    )
    severity = forms.ChoiceField(
        choices=Severity.choices,
        initial=Severity.MODERATE,
        help_text="Serious or critical reopens the monitoring gate for review.",
    )

    def __init__(self, *args: Any, members: dict[User, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"] = _members_field(members, "Nobody yet")


class IncidentUpdateForm(forms.Form):
    """Triage of an incident (`manage_incidents`): status, severity, owner, resolution, and a
    note added to the timeline with the change."""

    status = forms.ChoiceField(choices=IncidentStatus.choices)
    severity = forms.ChoiceField(
        choices=Severity.choices,
        help_text="Serious or critical reopens the monitoring gate for review.",
    )
    resolution = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to resolve the incident.",
    )
    note = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Note for the timeline",
    )

    def __init__(
        self, *args: Any, incident: Incident, members: dict[User, str], **kwargs: Any
    ) -> None:
        kwargs.setdefault(
            "initial",
            {
                "status": incident.status,
                "severity": incident.severity,
                "owner": incident.owner_id,
                "resolution": incident.resolution,
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["owner"] = _members_field(members, "Nobody")
        # Keep the field order of the page: status, severity, owner, resolution, note.
        self.order_fields(["status", "severity", "owner", "resolution", "note"])

    def service_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `incident_update` (after `is_valid()`): every field as the
        user left it; the service records only what differs."""
        data = self.cleaned_data
        return {name: data[name] for name in ("status", "severity", "owner", "resolution", "note")}


class IncidentNoteForm(forms.Form):
    """A note on an incident's timeline (every member who may comment)."""

    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Note")
