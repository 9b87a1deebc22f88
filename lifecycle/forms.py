"""Forms of the gate pages: they parse input; the services decide."""

from django import forms

from governance.models import User
from lifecycle.checklists.models import Evidence, ItemStatus
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.gates.models import SignatureMeaning
from lifecycle.metrics.registry import DEFAULT_RESAMPLES, MAX_RESAMPLES


class SignForm(forms.Form):
    """Signing a gate: role, meaning, reason, and re-authentication at that moment."""

    role = forms.ChoiceField(label="Sign as")
    meaning = forms.ChoiceField(
        choices=SignatureMeaning.choices,
        widget=forms.RadioSelect,
        label="Meaning of your signature",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Required for a rejection.",
    )
    password = forms.CharField(
        label="Your password",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        strip=False,
    )
    otp_token = forms.CharField(
        label="Authenticator code",
        required=False,
        help_text="Only if your account has an authenticator app set up: the code it shows, or "
        "one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    # What each meaning does, shown beside its choice in the dialog.
    MEANINGS = {
        SignatureMeaning.APPROVE: "You approve the gate's content as it is now. Your one "
        "decision in this round; the last required approval approves the gate.",
        SignatureMeaning.REJECT: "You send the gate back to the project lead with your reason. "
        "Your one decision in this round.",
        SignatureMeaning.REVIEW: "You record that you reviewed the content, without deciding. "
        "It never counts as an approval and leaves your approval or rejection open.",
    }

    def __init__(
        self,
        *args,
        roles: list[tuple[str, str]],
        meanings: list[str] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = roles
        if meanings is not None:
            self.fields["meaning"].choices = [
                (value, label) for value, label in SignatureMeaning.choices if value in meanings
            ]

    def meaning_help(self) -> list[tuple[str, str, str]]:
        """(value, label, explanation) of each meaning offered."""
        return [(v, label, self.MEANINGS[v]) for v, label in self.fields["meaning"].choices]


def _run_label(run: EvaluationRun) -> str:
    subset = f" — subset: {run.subset_reason}" if run.subset_reason else ""
    finished = f", {run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else ""
    return (
        f"Run {run.number}: {run.model_version.label} on {run.dataset_version.label}, "
        f"{run.n_records or 0:,} records{finished}{subset}"
    )


class EvidenceRunsField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, run: EvaluationRun) -> str:
        return _run_label(run)

    def _check_values(self, value):
        # Only the gate's runs are offered: anything else is refused before it reaches a query
        # (a number beyond a database integer would not be refused there, but overflow).
        offered = {str(pk) for pk in self.queryset.values_list("pk", flat=True)}
        unknown = [str(v) for v in value if str(v) not in offered]
        if unknown:
            raise forms.ValidationError(
                f"Not a succeeded run of this gate: {', '.join(unknown[:5])[:200]}.",
                code="invalid_choice",
            )
        return super()._check_values(value)


class SubmitForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Note to the committee"
    )
    evidence_runs = EvidenceRunsField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Evidence the gate is judged on",
        help_text="The committee judges the criteria on these runs only; later uploads never "
        "change the verdict. Changing them while in review invalidates signatures.",
    )

    def __init__(self, *args, runs=None, initial_runs=(), **kwargs):
        super().__init__(*args, **kwargs)
        queryset = runs if runs is not None else EvaluationRun.objects.none()
        self.fields["evidence_runs"].queryset = queryset
        self.fields["evidence_runs"].initial = [run.pk for run in initial_runs]


class DesignateEvidenceForm(forms.Form):
    evidence_runs = EvidenceRunsField(
        queryset=None, widget=forms.CheckboxSelectMultiple, label="Judge the gate on"
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Why the evidence changes",
        help_text="Recorded in the audit trail. The signatures made in this round are "
        "invalidated and a new round starts.",
    )

    def __init__(self, *args, runs, initial_runs=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["evidence_runs"].queryset = runs
        self.fields["evidence_runs"].initial = [run.pk for run in initial_runs]


class ItemStatusForm(forms.Form):
    status = forms.ChoiceField(choices=ItemStatus.choices)
    justification = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required for Not applicable.",
    )


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=None, required=False, empty_label="Unassigned")

    def __init__(self, *args, members: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = User.objects.filter(pk__in=[m.pk for m in members])


class EvidenceForm(forms.Form):
    kind = forms.ChoiceField(choices=Evidence.Kind.choices, initial=Evidence.Kind.FILE)
    title = forms.CharField(required=False, max_length=200)
    file = forms.FileField(required=False)
    url = forms.URLField(required=False, assume_scheme="https", max_length=2000, label="Link")
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self):
        data = super().clean()
        needed = {"file": "file", "link": "url", "note": "note"}.get(data.get("kind"))
        if needed and not data.get(needed):
            self.add_error(needed, f"Give the {self.fields[needed].label or needed} to attach.")
        return data


class CommentForm(forms.Form):
    body = forms.CharField(label="Comment", widget=forms.Textarea(attrs={"rows": 2}))


class WithdrawForm(forms.Form):
    reason = forms.CharField(label="Why withdraw it?")


class EvaluationUploadForm(forms.Form):
    file = forms.FileField(label="Records file (.jsonl or .csv)")
    model_version = forms.ModelChoiceField(queryset=None)
    dataset_version = forms.ModelChoiceField(queryset=None)
    metrics = forms.CharField(
        required=False,
        help_text="Comma-separated metric keys; empty uses the project's task preset.",
    )
    resamples = forms.IntegerField(min_value=1, max_value=MAX_RESAMPLES, initial=DEFAULT_RESAMPLES)
    subset_reason = forms.CharField(
        required=False,
        label="Deliberate subset? Why",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Only when the file covers part of the dataset version on purpose. A subset "
        "is shown but never satisfies a required criterion.",
    )
    accept_warnings = forms.BooleanField(
        required=False,
        label="Upload anyway: I understand the gate's criteria will lack this evidence",
    )

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_version"].queryset = project.model_versions.all()
        self.fields["dataset_version"].queryset = project.dataset_versions.all()

    def clean_metrics(self) -> list[str]:
        return [m.strip() for m in self.cleaned_data["metrics"].split(",") if m.strip()]
