"""Forms of the gate pages: they parse input; the services decide."""

from django import forms

from governance.models import User
from lifecycle.checklists.models import Evidence, ItemStatus
from lifecycle.gates.models import SignatureMeaning
from lifecycle.metrics.registry import DEFAULT_RESAMPLES, MAX_RESAMPLES


class SignForm(forms.Form):
    """Signing a gate: role, meaning, reason, and re-authentication at that moment."""

    role = forms.ChoiceField(label="Sign as")
    meaning = forms.ChoiceField(choices=SignatureMeaning.choices, widget=forms.RadioSelect)
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
        help_text="Only if your account has an authenticator app enrolled.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def __init__(self, *args, roles: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = roles


class SubmitForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Note to the committee"
    )


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

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_version"].queryset = project.model_versions.all()
        self.fields["dataset_version"].queryset = project.dataset_versions.all()

    def clean_metrics(self) -> list[str]:
        return [m.strip() for m in self.cleaned_data["metrics"].split(",") if m.strip()]
