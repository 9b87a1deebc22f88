"""The `hti1` report: the 31 source attributes of ONC's HTI-1 rule for predictive decision
support interventions, 45 CFR 170.315(b)(11)(iv)(B)(1)-(9), as JSON.

The attributes, their paragraphs, their order and whether the rule lets each be shown as "not
available" come from the vendored list (`standards/hti1/`, read at run time); the group
headings from its `SOURCE.md`. Each attribute's value comes from one place in the product:

- a model fact (`lifecycle.projects.facts`, whose `used_by` names the attribute, e.g.
  `hti1:HTI:B1.i`);
- the project's registration: intended use (B2.i) and intended users (B2.iii);
- evaluation results the committee decided on (`Gate.evidence_runs`): validity and fairness
  in test data from the same source as the training data (B7.i, B7.ii) from the development
  gate's designated runs on validation or test data; in data from a different source (B7.iii,
  B7.iv) and in local data (B8.ii, B8.iv) from the deployment or monitoring gate's designated
  runs on monitoring data, which is collected where the model is deployed. The product records
  no other kind of external dataset, so an external validation is described only through the
  B6 facts.

Nothing is invented. An attribute without a value is "not available" only where the rule
allows it (the list's `may_be_indicated_not_available`); anywhere else it is "missing", and
what would fill it is listed in `Built.missing_facts` (a model fact's key, or
`development_evaluation` / `development_fairness_evaluation` for B7.i / B7.ii).
"""

import csv
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from audits.reports.chai import (
    STANDARDS_DIR,
    Evidence,
    card_facts,
    designated_evidence,
    gate_decision,
    result_label,
    run_summary,
    value_form,
    value_text,
)
from audits.reports.common import Built, Progress, no_progress
from governance.models import Project
from lifecycle.evaluations.models import DatasetPurpose, ResultScope
from lifecycle.phases import Phase
from lifecycle.projects.facts import FACTS, FACTS_BY_KEY

KIND = "hti1"
REPORT_FORMAT = "llm-governance-report"
REGULATION = "45 CFR 170.315(b)(11)(iv)(B)"
CSV_FILE = STANDARDS_DIR / "hti1" / "hti1_predictive_dsi_source_attributes.csv"
SOURCE_FILE = STANDARDS_DIR / "hti1" / "SOURCE.md"

PROVIDED, NOT_AVAILABLE, MISSING = "provided", "not available", "missing"

# What fills B7.i and B7.ii when the development gate has no designated run to read them from.
DEVELOPMENT_EVALUATION = "development_evaluation"
DEVELOPMENT_FAIRNESS_EVALUATION = "development_fairness_evaluation"

# The attributes filled from the project's registration: (field, its name).
PROJECT_FIELDS = {
    "HTI:B2.i": ("intended_use", "intended use"),
    "HTI:B2.iii": ("intended_users", "intended users"),
}
# The attributes filled from evaluation results: (which evidence, validity or fairness).
SAME_SOURCE, LOCAL = "same source", "local"
VALIDITY, FAIRNESS = "validity", "fairness"
EVALUATED = {
    "HTI:B7.i": (SAME_SOURCE, VALIDITY),
    "HTI:B7.ii": (SAME_SOURCE, FAIRNESS),
    "HTI:B7.iii": (LOCAL, VALIDITY),
    "HTI:B7.iv": (LOCAL, FAIRNESS),
    "HTI:B8.ii": (LOCAL, VALIDITY),
    "HTI:B8.iv": (LOCAL, FAIRNESS),
}
MISSING_EVALUATION = {
    "HTI:B7.i": DEVELOPMENT_EVALUATION,
    "HTI:B7.ii": DEVELOPMENT_FAIRNESS_EVALUATION,
}
# Where an evaluated attribute comes from, said when there is nothing there.
WHERE = {
    SAME_SOURCE: "designated evaluation runs of the development gate on validation or test data",
    LOCAL: "designated evaluation runs of the deployment or monitoring gate on monitoring data",
}
# Test data "derived from the same source as the initial training data" (B7): the development
# gate's runs on held-out data. Monitoring data is collected where the model is deployed: a
# different source than the training data (B7.iii, B7.iv) and the local data of B8.
SAME_SOURCE_PURPOSES = (DatasetPurpose.VALIDATION, DatasetPurpose.TEST)
LOCAL_PURPOSES = (DatasetPurpose.MONITORING,)


@dataclass(frozen=True)
class Standard:
    """One row of the vendored attribute list."""

    element_id: str
    paragraph: str
    attribute: str
    group: str
    may_be_not_available: bool


@dataclass(frozen=True)
class Attribute:
    """One source attribute of the project: the rule's row, its value and where it came from.

    `status` is "provided", "not available" (only where the rule allows it) or "missing";
    `missing` names what would fill a missing one (a model fact's key, or what else)."""

    element_id: str
    paragraph: str
    attribute: str
    group: str
    value: str | None
    status: str
    source: str
    may_be_not_available: bool = False
    missing: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The attribute as the report gives it."""
        return {
            "element_id": self.element_id,
            "paragraph": self.paragraph,
            "attribute": self.attribute,
            "group": self.group,
            "value": self.value,
            "status": self.status,
            "source": self.source,
        }


@functools.cache
def group_headings() -> dict[str, str]:
    """The (B)(n) group headings of `SOURCE.md`, by n: {"1": "(B)(1) Details and output …"}."""
    headings = {}
    for line in SOURCE_FILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\(B\)\((\d+)\) (.+)$", line.strip())
        if match:
            headings[match.group(1)] = match.group(0)
    return headings


@functools.cache
def standard() -> tuple[Standard, ...]:
    """The 31 attributes of the vendored list, in its order."""
    headings = group_headings()
    rows = []
    with CSV_FILE.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            element_id = row["element_id"]
            group = re.match(r"^HTI:B(\d+)\.", element_id)
            if group is None or group.group(1) not in headings:
                raise ValueError(f"{CSV_FILE.name}: no group heading for {element_id!r}")
            rows.append(
                Standard(
                    element_id=element_id,
                    paragraph=row["cfr_paragraph"],
                    attribute=row["attribute"],
                    group=headings[group.group(1)],
                    may_be_not_available=row["may_be_indicated_not_available"] == "True",
                )
            )
    return tuple(rows)


def facts_for(element_id: str) -> list[str]:
    """The model facts that fill an attribute, in declaration order."""
    return [fact.key for fact in FACTS if f"hti1:{element_id}" in fact.used_by]


def _results_text(evidence: Evidence, aspect: str) -> str | None:
    """The evidence's validity (overall results) or fairness (differences between groups,
    then subgroup results) as lines of text, after a line saying which runs and which gate;
    None when the runs have no such result."""
    if aspect == VALIDITY:
        rows = [r for r in evidence.results if r.scope == ResultScope.OVERALL]
    else:
        rows = [r for r in evidence.results if r.scope == ResultScope.FAIRNESS]
        rows += [r for r in evidence.results if r.scope == ResultScope.GROUP]
    if not rows:
        return None
    several = len(evidence.runs) > 1
    numbers = {run.pk: run.number for run in evidence.runs}
    lines = [
        " ".join(run_summary(run) for run in evidence.runs) + " " + gate_decision(evidence.gate)
    ]
    for row in rows:
        form = value_form(row)
        text = value_text(form)
        if text == "not computed" and row.reason:
            text += f" ({row.reason})"
        lines.append(f"{result_label(row, numbers[row.run_id] if several else None)}: {text}")
    return "\n".join(lines)


def _evidence_source(evidence: Evidence) -> str:
    runs = ", ".join(str(run.number) for run in evidence.runs)
    label = "evaluation runs" if len(evidence.runs) > 1 else "evaluation run"
    state = evidence.gate.get_state_display().lower()
    return f"{label} {runs} (designated evidence of the {evidence.phase.label} gate, {state})"


def hti1_attributes(project: Project) -> list[Attribute]:
    """The 31 source attributes of `project`, in the rule's order."""
    stored = card_facts(project)
    facts = {key: str(value).strip() for key, value in stored.items() if value is not None}
    evidence = {
        SAME_SOURCE: designated_evidence(project, (Phase.DEVELOPMENT,), SAME_SOURCE_PURPOSES),
        LOCAL: designated_evidence(project, (Phase.MONITORING, Phase.DEPLOYMENT), LOCAL_PURPOSES),
    }
    attributes = []
    for row in standard():
        value: str | None
        # What would fill the attribute, named in `Built.missing_facts` when it stays empty.
        gaps: tuple[str, ...]
        if row.element_id in PROJECT_FIELDS:
            field, name = PROJECT_FIELDS[row.element_id]
            value = str(getattr(project, field)).strip() or None
            source, gaps, complete = f"project: {name}", (field,), value is not None
        elif row.element_id in EVALUATED:
            which, aspect = EVALUATED[row.element_id]
            found = evidence[which]
            value = _results_text(found, aspect) if found is not None else None
            source = _evidence_source(found) if found is not None and value else WHERE[which]
            gaps = (
                (MISSING_EVALUATION[row.element_id],)
                if row.element_id in MISSING_EVALUATION
                else ()
            )
            complete = value is not None
        else:
            keys = facts_for(row.element_id)
            if not keys:
                raise ValueError(f"No source declared for HTI-1 attribute {row.element_id}.")
            given = [key for key in keys if facts.get(key)]
            if len(keys) == 1:
                value = facts.get(keys[0]) or None
            else:
                labelled = [f"{FACTS_BY_KEY[key].label}: {facts[key]}" for key in given]
                value = "\n".join(labelled) or None
            source = "model facts: " + ", ".join(keys)
            gaps = tuple(key for key in keys if key not in given)
            complete = not gaps
        if complete:
            status, gaps = PROVIDED, ()
        elif value is None and row.may_be_not_available:
            status, gaps = NOT_AVAILABLE, ()
        else:
            # Partly given (one of two facts) is missing too, never "not available".
            status = MISSING
        attributes.append(
            Attribute(
                element_id=row.element_id,
                paragraph=row.paragraph,
                attribute=row.attribute,
                group=row.group,
                value=value,
                status=status,
                source=source,
                may_be_not_available=row.may_be_not_available,
                missing=gaps,
            )
        )
    return attributes


def hti1_content(
    project: Project, *, chain: dict[str, Any], progress: Progress = no_progress
) -> dict[str, Any]:
    """What the HTI-1 report says: a function of the project's data only."""
    progress(10, "Reading the model facts, the project and the designated evaluation runs")
    attributes = hti1_attributes(project)
    progress(70, "Listing what is missing")
    missing = list(dict.fromkeys(key for a in attributes for key in a.missing))
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "kind": KIND,
        "project": {"slug": project.slug, "name": project.name},
        "chain": chain,
        "regulation": REGULATION,
        "standard": {
            "name": "ONC HTI-1 source attributes for predictive decision support interventions",
            "attribute_list_sha256": hashlib.sha256(CSV_FILE.read_bytes()).hexdigest(),
        },
        "attributes": [attribute.as_dict() for attribute in attributes],
        "missing_facts": missing,
    }


def hti1_json(content: dict[str, Any]) -> bytes:
    """The report file: the content as indented JSON (UTF-8), ending with a newline."""
    return (json.dumps(content, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def file_name(project: Project) -> str:
    return f"{project.slug}-hti1-source-attributes.json"


def build_hti1(
    project: Project, *, chain: dict[str, Any], progress: Progress = no_progress
) -> Built:
    """The 31 HTI-1 source attributes of `project` as JSON."""
    content = hti1_content(project, chain=chain, progress=progress)
    body = hti1_json(content)
    progress(95, "Attributes written")
    return Built(
        content=content,
        body=body,
        format="json",
        file_name=file_name(project),
        missing_facts=list(content["missing_facts"]),
    )
