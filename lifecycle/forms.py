"""Forms of the gate pages: they parse input; the services decide."""

from django import forms

from governance.models import SignatureMeaning


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
