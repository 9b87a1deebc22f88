"""The dashboard's filter form and the model facts form: they parse input; the selectors and
services decide."""

import re
from typing import Any

from django import forms

from governance.models import RiskTier, TaskCategory
from lifecycle.gates.models import GateState
from lifecycle.phases import Phase
from lifecycle.projects.facts import FACTS, Fact


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


class ModelFactsForm(forms.Form):
    """One field per declared model fact (`lifecycle.projects.facts.FACTS`, named by its key):
    short facts on one line, the others as paragraphs; and the reason, for the audit trail.

    Each fact carries the value the page was loaded with (a hidden `initial-<key>`), so that
    `changes()` names only the facts this user edited: the service leaves the others alone,
    also when someone else changed them meanwhile. Lengths and NULs are the service's rules
    (`model_facts_update`), whose refusals are put next to the fact they name.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for fact in FACTS:
            # A one-line input would drop the line breaks of a short fact given over the API.
            one_line = fact.short and "\n" not in str(self.initial.get(fact.key) or "")
            widget = forms.TextInput() if one_line else forms.Textarea(attrs={"rows": 3})
            self.fields[fact.key] = forms.CharField(
                label=fact.label,
                help_text=fact.help,
                required=False,
                widget=widget,
                show_hidden_initial=True,
            )
        self.fields["reason"] = forms.CharField(
            label="Reason for the change",
            help_text="Optional; recorded with the change in the audit trail.",
            required=False,
        )

    def changes(self) -> dict[str, str]:
        """The facts edited since the page was loaded, with their new value."""
        edited = set(self.changed_data)
        return {fact.key: self.cleaned_data[fact.key] for fact in FACTS if fact.key in edited}


_HTI1 = re.compile(r"^HTI:B(\d+)\.([ivx]+)$")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|\d+")


def fact_uses(fact: Fact) -> list[str]:
    """Where the exports put the fact, for people: "CHAI card: Model developer",
    "HTI-1 (b)(11)(iv)(B)(1)(i)" (the paragraph of 45 CFR 170.315)."""
    uses = []
    for use in fact.used_by:
        scheme, _, element = use.partition(":")
        if scheme == "hti1" and (match := _HTI1.match(element)):
            group, item = match.groups()
            uses.append(f"HTI-1 (b)(11)(iv)(B)({group})({item})")
        elif scheme == "chai":
            uses.append(f"CHAI card: {_words(element.rsplit('/', 1)[-1])}")
        else:
            uses.append(use)
    return uses


def _words(name: str) -> str:
    """A CHAI element name as words: "EHRCompatibility" -> "EHR compatibility"."""
    words = [w if w.isupper() and len(w) > 1 else w.lower() for w in _WORD.findall(name)]
    text = " ".join(words)
    return text[:1].upper() + text[1:]
