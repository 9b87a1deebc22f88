"""The `chai` report: the CHAI Applied Model Card v0.2, as XML and as a PDF rendering.

The card is built from what the product holds: the project's registration (name, description,
intended use and users, clinical setting, risk tier), its model facts
(`lifecycle.projects.facts`) and the evaluation results its committee decided on. It is
written element by element in the order of CHAI's schema (`standards/chai/schema-v0.2.xsd`,
vendored unmodified) and every card is validated against that schema before it leaves this
module, offline: the schema's import of the W3C XML-signature schema is mapped to the copy the
`xmlschema` package ships, and no other resource may be loaded.

Nothing is invented. A fact the project has not recorded is written as the literal text
"Not provided: <label> (record it on the project's Model facts page)", which keeps the card
valid and says what to do, and `Built.missing_facts` names exactly those facts.

Key metrics come from the evaluation runs a committee designated as a gate's evidence
(`Gate.evidence_runs`): those of the most advanced approved gate among development and
deployment that has any, else of such a gate in review. Each result is written in CHAI's own
value forms, `{"kind":"estimate_ci","estimate":…,"lower":…,"upper":…,"level":95}` when it has
an interval and `{"kind":"single","value":…}` otherwise. Numbers are written exactly as the
product stores them: proportions stay fractions between 0 and 1 (not percentages), so every
number on the card equals the evaluation result and compares directly with the gate's
thresholds; a `unit` is given only where the metric has one (milliseconds for latency).
"""

import functools
import hashlib
import io
import json
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import xmlschema
from django.template.loader import render_to_string

from audits.reports.common import Built, Progress, no_progress
from audits.reports.pdf import Attachment, render_pdf
from governance.models import Project, RiskTier
from lifecycle.evaluations.models import (
    EvaluationResult,
    EvaluationRun,
    ModelVersion,
    ResultScope,
)
from lifecycle.gates.criteria import Verdict
from lifecycle.gates.models import CriterionScope, Gate, GateCriterion, GateState
from lifecycle.gates.readiness import Readiness, gate_readiness
from lifecycle.metrics.bootstrap import CONFIDENCE
from lifecycle.metrics.registry import FAIRNESS_METRICS, METRICS
from lifecycle.phases import Phase
from lifecycle.projects.facts import FACTS_BY_KEY, missing_facts
from lifecycle.projects.models import ModelFacts

KIND = "chai"
REPORT_FORMAT = "llm-governance-report"
FORMATS = ("xml", "pdf")

NAMESPACE = "https://mc.chai.org/v0.2/schema.xsd"
DSIG_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
STANDARDS_DIR = Path(__file__).resolve().parent / "standards"
SCHEMA_FILE = STANDARDS_DIR / "chai" / "schema-v0.2.xsd"
# The XML-signature schema CHAI's schema imports by URL, from the copy `xmlschema` ships.
DSIG_SCHEMA_FILE = (
    Path(xmlschema.__file__).resolve().parent / "schemas/DSIG/xmldsig-core-schema.xsd"
)

XML_ATTACHMENT = "chai-model-card.xml"
FACTS_PAGE = "record it on the project's Model facts page"

# Keys of `Built.missing_facts` that are not model facts: what the card needs from the rest of
# the product.
MISSING_DESCRIPTION = "description"
MISSING_RELEASE_VERSION = "release_version"
MISSING_KEY_METRICS = "key_metrics"

# The three KeyMetrics blocks of the schema, in its order.
USEFULNESS = "UsefulnessUsabilityEfficacy"
FAIRNESS = "FairnessEquity"
SAFETY = "SafetyReliability"
CATEGORIES = (USEFULNESS, FAIRNESS, SAFETY)
CATEGORY_NAMES = {
    USEFULNESS: "usefulness, usability and efficacy",
    FAIRNESS: "fairness and equity",
    SAFETY: "safety and reliability",
}

# Overall results that speak to safety and reliability rather than usefulness: made-up
# content, calibration error (a confident wrong score misleads), robustness to perturbed
# input, consistency of repeated answers, sending a patient to a less urgent level, and
# latency. Subgroup results and differences between groups are fairness, whatever the metric.
SAFETY_METRICS = frozenset(
    {
        "hallucination_rate",
        "ece",
        "brier_score",
        "attack_success_rate",
        "consistency",
        "under_triage_rate",
        "over_triage_rate",
        "latency_p50_ms",
        "latency_p95_ms",
    }
)

# The metrics by the names clinicians use (the registry keys are the engine's).
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "precision": "Precision (PPV)",
    "recall": "Sensitivity",
    "f1": "F1 score",
    "specificity": "Specificity",
    "lr_positive": "Positive likelihood ratio",
    "lr_negative": "Negative likelihood ratio",
    "confusion_matrix": "Confusion matrix",
    "weighted_kappa": "Quadratic weighted kappa",
    "auroc": "AUROC",
    "brier_score": "Brier score",
    "ece": "Expected calibration error",
    "triage_accuracy": "Triage accuracy",
    "under_triage_rate": "Under-triage rate",
    "over_triage_rate": "Over-triage rate",
    "c_index": "Concordance index",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "bleu": "BLEU",
    "gleu": "GLEU",
    "exact_match": "Exact match",
    "token_f1": "Token F1",
    "wer": "Word error rate",
    "flesch_kincaid_grade": "Flesch-Kincaid grade",
    "flesch_reading_ease": "Flesch reading ease",
    "compression_ratio": "Compression ratio",
    "redundancy_rate": "Redundancy rate",
    "perplexity": "Perplexity",
    "attack_success_rate": "Attack success rate",
    "consistency": "Consistency",
    "code_exact_match": "Code exact match",
    "code_category_accuracy": "Code category accuracy",
    "entity_precision": "Entity precision",
    "entity_recall": "Entity recall",
    "entity_f1": "Entity F1",
    "hallucination_rate": "Hallucination rate",
    "task_completion_rate": "Task completion rate",
    "empathy_score": "Empathy score",
    "trust_score": "Trust score",
    "latency_p50_ms": "Latency, median",
    "latency_p95_ms": "Latency, 95th percentile",
    "demographic_parity_difference": "Demographic parity difference",
    "equalized_odds_difference": "Equalized odds difference",
    "semantic_similarity": "Semantic similarity",
}
UNITS = {"latency_p50_ms": "ms", "latency_p95_ms": "ms"}
LEVEL = round(CONFIDENCE * 100)
NO_VALUE = json.dumps({"kind": "single", "value": None}, separators=(",", ":"))

_SCOPE_ORDER = {ResultScope.OVERALL: 0, ResultScope.GROUP: 1, ResultScope.FAIRNESS: 2}
_METRIC_ORDER = {key: index for index, key in enumerate(METRICS)}
# Characters XML 1.0 cannot carry at all (C0 controls other than tab and newlines, lone
# surrogates, U+FFFE/U+FFFF): a fact pasted with one would make an invalid card.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class CardInvalid(RuntimeError):
    """A built card that does not validate against CHAI's schema: a bug in this module, never
    a problem with the project's data (which is always written as text)."""


# --- Validation ----------------------------------------------------------------------------------


@functools.cache
def chai_schema() -> xmlschema.XMLSchema10:
    """CHAI's schema v0.2, compiled once per process, from the vendored files only: the
    XML-signature import goes to `xmlschema`'s own copy, and `allow="local"` refuses any URL."""
    return xmlschema.XMLSchema10(
        str(SCHEMA_FILE),
        locations=[(DSIG_NAMESPACE, str(DSIG_SCHEMA_FILE))],
        allow="local",
    )


def validate_chai(xml: bytes) -> list[str]:
    """What is wrong with `xml` as a CHAI Applied Model Card v0.2: one line per problem, saying
    where (an element path) and why; empty when it is valid. Entities and external resources
    are refused, so validating a card from elsewhere fetches nothing."""
    try:
        resource = xmlschema.XMLResource(io.BytesIO(xml), defuse="always", allow="none")
        errors = list(chai_schema().iter_errors(resource))
    except (xmlschema.XMLResourceError, ET.ParseError) as exc:
        return [f"not a readable XML document: {exc}"]
    problems = []
    for error in errors:
        line = f" (line {error.sourceline})" if getattr(error, "sourceline", None) else ""
        problems.append(f"{error.path or '/'}{line}: {error.reason or error.message}")
    return problems


# --- Evaluation evidence -------------------------------------------------------------------------


@dataclass
class Evidence:
    """The designated evaluation runs of one gate, their results and the gate's verdicts."""

    gate: Gate
    readiness: Readiness
    runs: list[EvaluationRun]  # by run number
    results: list[EvaluationResult]  # scalar results only, in reading order

    @property
    def phase(self) -> Phase:
        return Phase(self.gate.phase)


def designated_evidence(
    project: Project, phases: Sequence[Phase], purposes: Collection[str] | None = None
) -> Evidence | None:
    """The designated runs of the most advanced approved gate of `phases` that has any (only
    runs on datasets of `purposes`, when given); else of the most advanced such gate in review;
    None when no gate of `phases` has such evidence. An open or locked gate has none: its runs
    are only a preview."""
    gates = list(Gate.objects.filter(project=project, phase__in=[p.value for p in phases]))
    if not gates:
        return None
    answers = gate_readiness(gates)
    position = {phase: index for index, phase in enumerate(Phase.ordered())}
    ranked = sorted(answers.values(), key=lambda r: position[Phase(r.gate.phase)], reverse=True)
    for state in (GateState.APPROVED, GateState.IN_REVIEW):
        for readiness in ranked:
            if readiness.gate.state != state or not readiness.designated:
                continue
            runs = sorted(
                (
                    run
                    for run in readiness.runs
                    if purposes is None or run.dataset_version.purpose in purposes
                ),
                key=lambda run: run.number,
            )
            if runs:
                return Evidence(readiness.gate, readiness, runs, _scalar_results(runs))
    return None


def _scalar_results(runs: list[EvaluationRun]) -> list[EvaluationResult]:
    """Every number of the runs (a confusion matrix is not one), overall first, then
    subgroups, then differences between groups; metrics in the registry's order."""
    number = {run.pk: run.number for run in runs}
    rows = [
        row
        for row in EvaluationResult.objects.filter(run__in=runs)
        if METRICS.get(row.metric) is None or METRICS[row.metric].kind != "matrix"
    ]
    return sorted(
        rows,
        key=lambda r: (
            number[r.run_id],
            _SCOPE_ORDER.get(ResultScope(r.scope), 9),
            _METRIC_ORDER.get(r.metric, len(_METRIC_ORDER)),
            r.metric,
            r.group_attribute,
            r.group_value,
        ),
    )


def metric_name(metric: str) -> str:
    """A metric key by the name a clinician knows it by."""
    return METRIC_NAMES.get(metric, metric.replace("_", " ").capitalize())


def result_scope(result: EvaluationResult) -> str:
    """Where a result holds: "overall", "sex = F", "between sex groups"."""
    if result.scope == ResultScope.GROUP:
        return f"{result.group_attribute} = {result.group_value}"
    if result.scope == ResultScope.FAIRNESS:
        return f"between {result.group_attribute} groups"
    return "overall"


def result_label(result: EvaluationResult, run_number: int | None = None) -> str:
    """The metric's name and scope, e.g. "AUROC (overall)"; with the run when several runs
    are the evidence, e.g. "AUROC (overall, run 3)"."""
    where = result_scope(result)
    if run_number is not None:
        where += f", run {run_number}"
    return f"{metric_name(result.metric)} ({where})"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def value_form(result: EvaluationResult) -> dict[str, Any]:
    """The result in CHAI's value form: `estimate_ci` with the stored value and interval when
    all three are numbers, else `single` (its value null when it could not be computed)."""
    value, low, high = _finite(result.value), _finite(result.ci_low), _finite(result.ci_high)
    form: dict[str, Any]
    if value is not None and low is not None and high is not None:
        form = {"kind": "estimate_ci", "estimate": value, "lower": low, "upper": high}
        form["level"] = LEVEL
    else:
        form = {"kind": "single", "value": value}
    if result.metric in UNITS:
        form["unit"] = UNITS[result.metric]
    return form


def value_json(result: EvaluationResult) -> str:
    """`value_form` as CHAI's examples write it: compact JSON, keys in CHAI's order."""
    return json.dumps(value_form(result), separators=(",", ":"), allow_nan=False)


def value_text(form: dict[str, Any]) -> str:
    """A value form in words, for a reader: "0.912 (95% CI 0.881–0.94)"."""
    unit = f" {form['unit']}" if form.get("unit") else ""
    if form.get("kind") == "estimate_ci":
        return (
            f"{form['estimate']:.4g}{unit} ({form['level']}% CI "
            f"{form['lower']:.4g}–{form['upper']:.4g})"
        )
    value = form.get("value")
    return "not computed" if value is None else f"{value:.4g}{unit}"


def result_category(metric: str, scope: str) -> str:
    """Which KeyMetrics block a result belongs to: differences between groups and subgroup
    results are fairness; the safety metrics overall are safety; the rest is usefulness."""
    if metric in FAIRNESS_METRICS or scope in (ResultScope.GROUP, ResultScope.FAIRNESS):
        return FAIRNESS
    if metric in SAFETY_METRICS:
        return SAFETY
    return USEFULNESS


def criterion_category(criterion: GateCriterion) -> str:
    """The block a gate criterion speaks to, by the same rule as the results it judges."""
    if criterion.metric in FAIRNESS_METRICS or criterion.scope != CriterionScope.OVERALL:
        return FAIRNESS
    return result_category(criterion.metric, ResultScope.OVERALL)


def verdict_text(verdict: Verdict) -> str:
    """A criterion and its verdict in a sentence."""
    criterion = verdict.criterion
    kind = "required" if criterion.required else "advisory"
    text = f"{criterion.expression} ({kind}): {verdict.status}"
    if verdict.observed_text:
        text += f"; observed {verdict.observed_text}"
    if not verdict.passed and verdict.detail and verdict.detail != verdict.observed_text:
        text += f" ({verdict.detail})"
    return text + "."


def utc(moment: datetime | None) -> str | None:
    """A datetime as "2026-03-02T14:05:09Z" (the reports' time format)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decision_clause(gate: Gate) -> str:
    """What the committee did with the gate: "was approved on 2026-03-02 (review round 1)"."""
    if gate.state == GateState.APPROVED and gate.decided_at is not None:
        day = gate.decided_at.astimezone(UTC).date().isoformat()
        return f"was approved on {day} (review round {gate.review_round})"
    if gate.state == GateState.APPROVED:
        return f"was approved (review round {gate.review_round})"
    return f"is in review (round {gate.review_round}) and not yet approved"


def gate_decision(gate: Gate) -> str:
    """What the committee did with the gate, in a sentence."""
    return f"The {Phase(gate.phase).label} gate {decision_clause(gate)}."


def run_summary(run: EvaluationRun) -> str:
    """A run in a sentence: its number, model and dataset versions, records, and any subset."""
    records = f"{run.n_records:,}" if run.n_records is not None else "an unknown number of"
    text = (
        f"Run {run.number} measured model version {run.model_version.label} on dataset version "
        f"{run.dataset_version.label} ({run.dataset_version.get_purpose_display().lower()} "
        f"data, {records} records)"
    )
    if run.is_subset:
        text += f", a declared subset of the dataset version ({run.subset_reason})"
    return text + "."


# --- The card ------------------------------------------------------------------------------------


def not_provided(label: str, how: str = FACTS_PAGE) -> str:
    """The text standing in for a missing value: never a made-up one."""
    return f"Not provided: {label} ({how})"


def xml_text(text: str) -> str:
    """Text as XML will carry it: newlines as "\\n" (what a parser returns for "\\r\\n") and
    characters XML cannot hold at all replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


class _Facts:
    """The project's model facts as the card reads them."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts = {key: str(value) for key, value in facts.items() if value is not None}

    def value(self, key: str) -> str:
        return xml_text(self.facts.get(key, "").strip())

    def required(self, key: str) -> str:
        return self.value(key) or not_provided(FACTS_BY_KEY[key].label)

    def lines(self, key: str) -> list[str]:
        return [line.strip() for line in self.value(key).split("\n") if line.strip()]


def _release_version(project: Project) -> tuple[ModelVersion | None, str]:
    """The model version of the most recently approved gate's designated run, else the
    project's latest model version; and where it came from."""
    run = (
        EvaluationRun.objects.filter(
            evidence_for__project=project, evidence_for__state=GateState.APPROVED
        )
        .select_related("model_version", "gate")
        .order_by("-evidence_for__decided_at", "-number")
        .first()
    )
    if run is not None:
        phase = Phase(run.gate.phase).label
        return run.model_version, f"evaluation run {run.number} ({phase} gate, approved)"
    latest = ModelVersion.objects.filter(project=project).order_by("-created_at", "-id").first()
    if latest is not None:
        return latest, "latest model version"
    return None, ""


def _key_metric(category: str, evidence: Evidence) -> dict[str, Any]:
    """One KeyMetrics block from the gate's designated runs."""
    several = len(evidence.runs) > 1
    numbers = {run.pk: run.number for run in evidence.runs}
    rows = [r for r in evidence.results if result_category(r.metric, r.scope) == category]
    results = [
        {
            "Label": xml_text(result_label(r, numbers[r.run_id] if several else None)),
            "ValueJson": value_json(r),
        }
        for r in rows
    ]
    name = CATEGORY_NAMES[category]
    if not results:
        results = [
            {"Label": f"No {name} metric in the designated evaluation run", "ValueJson": NO_VALUE}
        ]
    phase = evidence.phase.label
    verdicts = [
        v for v in evidence.readiness.verdicts if criterion_category(v.criterion) == category
    ]
    if verdicts:
        goal = (
            f"Meet the {phase} gate's criteria on {name}: "
            + "; ".join(
                f"{v.criterion.expression} ({'required' if v.criterion.required else 'advisory'})"
                for v in verdicts
            )
            + "."
        )
        interpretation = " ".join(verdict_text(v) for v in verdicts)
    else:
        goal = f"Report {name} as measured: the {phase} gate sets no criterion on these metrics."
        interpretation = (
            "No criterion of the gate applies to these metrics; they are reported as measured."
        )
    uncomputed = [
        f"{result_label(r, numbers[r.run_id] if several else None)}: {r.reason or 'not computed'}"
        for r in rows
        if _finite(r.value) is None
    ]
    if uncomputed:
        interpretation += " Not computed: " + "; ".join(uncomputed) + "."
    test_types = []
    data = []
    for run in evidence.runs:
        dataset = run.dataset_version
        test_types.append(
            f"Run {run.number}: offline evaluation of recorded model outputs on "
            f"{dataset.get_purpose_display().lower()} data, scored by the product's metric "
            f"engine with {LEVEL}% percentile-bootstrap intervals ({run.resamples:,} "
            f"resamples, seed {run.seed})."
        )
        text = (
            f"Dataset version {dataset.label} ({dataset.get_purpose_display().lower()} data): "
            f"{dataset.row_count:,} records, SHA-256 {dataset.sha256}."
        )
        if dataset.description.strip():
            text += f" {dataset.description.strip()}"
        data.append(text)
    validation = " ".join(run_summary(run) for run in evidence.runs)
    validation += (
        f" {'They are' if several else 'It is'} the designated evidence of the {phase} gate, "
        f"which {decision_clause(evidence.gate)}."
    )
    return {
        "MetricGoal": xml_text(goal),
        "Results": {"MetricResult": results},
        "Interpretation": xml_text(interpretation),
        "TestType": xml_text("\n".join(dict.fromkeys(test_types))),
        "TestingDataDescription": xml_text("\n".join(dict.fromkeys(data))),
        "ValidationProcessAndJustification": xml_text(validation),
    }


NO_EVIDENCE_HOW = (
    "designate evaluation runs as the evidence when submitting the development or deployment gate"
)


def _no_key_metric() -> dict[str, Any]:
    text = not_provided("no designated evaluation run", NO_EVIDENCE_HOW)
    return {
        "MetricGoal": text,
        "Results": {
            "MetricResult": [{"Label": "No designated evaluation run", "ValueJson": NO_VALUE}]
        },
        "Interpretation": text,
        "TestType": text,
        "TestingDataDescription": text,
        "ValidationProcessAndJustification": text,
    }


def card_facts(project: Project) -> dict[str, Any]:
    """The project's stored model facts (none when it has not recorded any)."""
    stored = ModelFacts.objects.filter(project=project).first()
    return dict(stored.facts) if stored is not None and isinstance(stored.facts, dict) else {}


@dataclass
class Card:
    """The card as a dictionary in the schema's order (element name -> text, nested block, or
    list of repeated elements), what it is based on, and what is missing."""

    card: dict[str, Any]
    missing: list[str]
    evidence: dict[str, Any] | None
    release_version_source: str


def build_card(project: Project, progress: Progress = no_progress) -> Card:
    """The Applied Model Card of `project`, as the dictionary the XML is written from."""
    progress(5, "Reading the model facts")
    stored = card_facts(project)
    facts = _Facts(stored)
    missing = [fact.key for fact in missing_facts(stored, "chai")]

    progress(20, "Reading the release and the designated evaluation runs")
    release, release_source = _release_version(project)
    if release is None:
        missing.append(MISSING_RELEASE_VERSION)
    evidence = designated_evidence(project, (Phase.DEPLOYMENT, Phase.DEVELOPMENT))
    description = xml_text(project.description.strip())
    if not description:
        missing.append(MISSING_DESCRIPTION)

    release_info: dict[str, Any] = {
        "ReleaseStage": facts.required("release_stage"),
        "ReleaseDate": facts.required("release_date"),
        "ReleaseVersion": xml_text(release.label)
        if release is not None
        else not_provided("model version", "register a model version on the Evaluations page"),
        "GlobalAvailability": facts.required("global_availability"),
    }
    if facts.lines("ehr_compatibility"):
        release_info["EHRCompatibility"] = {"EHR": facts.lines("ehr_compatibility")}
    if facts.value("regulatory_approval"):
        release_info["RegulatoryApproval"] = facts.value("regulatory_approval")

    system: dict[str, Any] = {
        "OutcomesAndOutputs": facts.required("output_description"),
        "ModelType": facts.required("model_type"),
    }
    foundation = facts.value("foundation_models")
    if not foundation and release is not None:
        # The product records the base model of each version: the foundation model, not a guess.
        foundation = xml_text(
            f"{release.base_model} (base model of model version {release.label}, adapted by "
            f"{release.get_adaptation_display()})"
        )
    if foundation:
        system["FoundationModels"] = foundation
    system |= {
        "InputDataSource": facts.required("input_data_source"),
        "OutputAndInputDataTypes": facts.required("data_types"),
        "DevelopmentDataCharacterization": facts.required("development_data"),
        "BiasMitigationApproaches": facts.required("bias_mitigation"),
        "OngoingMaintenance": facts.required("validity_monitoring"),
    }
    for key, element in (("security", "Security"), ("transparency", "Transparency")):
        if facts.value(key):
            system[element] = facts.value(key)

    transparency: dict[str, Any] = {"FundingSource": facts.required("funding_source")}
    if facts.value("third_party_information"):
        transparency["ThirdPartyInformation"] = facts.value("third_party_information")
    transparency["StakeholdersConsulted"] = facts.required("stakeholders_consulted")

    progress(40, "Writing the key metrics")
    if evidence is None:
        missing.append(MISSING_KEY_METRICS)
        key_metrics = {category: _no_key_metric() for category in CATEGORIES}
    else:
        key_metrics = {category: _key_metric(category, evidence) for category in CATEGORIES}

    resources: dict[str, Any] = {}
    if facts.value("outcome_evaluations"):  # optional in CHAI's schema
        resources["EvaluationReferences"] = facts.value("outcome_evaluations")
    if facts.value("clinical_trial"):
        resources["ClinicalTrial"] = facts.value("clinical_trial")
    resources["PeerReviewedPublications"] = facts.required("publications")
    if facts.value("reimbursement_status"):
        resources["ReimbursementStatus"] = facts.value("reimbursement_status")
    resources["PatientConsentOrDisclosure"] = facts.required("patient_consent")

    card = {
        "BasicInfo": {
            "ModelName": xml_text(project.name),
            "ModelDeveloper": facts.required("developer"),
            "DeveloperContact": facts.required("developer_contact"),
        },
        "ReleaseInfo": release_info,
        "ModelSummary": {
            "Summary": description
            or not_provided("project description", "add one to the project's details"),
            "Keywords": {"Keyword": facts.lines("keywords")},
        },
        "UsesAndDirections": {
            "IntendedUseAndWorkflow": xml_text(
                f"{project.intended_use.strip()}\n\nClinical setting: "
                f"{project.clinical_setting.strip()}"
            ),
            "PrimaryIntendedUsers": xml_text(project.intended_users.strip()),
            "HowToUse": facts.required("how_to_use"),
            "TargetedPatientPopulation": facts.required("target_population"),
            "CautionedOutOfScopeSettings": facts.required("out_of_scope_uses"),
        },
        "Warnings": {
            "KnownRisksAndLimitations": facts.required("known_risks"),
            "KnownBiasesOrEthicalConsiderations": facts.required("known_biases"),
            "ClinicalRiskLevel": f"{RiskTier(project.risk_tier).label} (the risk tier the "
            "project is governed under)",
        },
        "TrustIngredients": {"AISystemFacts": system, "TransparencyInformation": transparency},
        "KeyMetrics": key_metrics,
        "Resources": resources,
        "Bibliography": facts.value("bibliography"),
    }
    basis = None
    if evidence is not None:
        basis = {
            "gate": {
                "phase": evidence.gate.phase,
                "state": evidence.gate.state,
                "review_round": evidence.gate.review_round,
                "decided_at": utc(evidence.gate.decided_at),
            },
            "runs": [run.number for run in evidence.runs],
        }
    return Card(card, missing, basis, release_source)


def card_xml(card: dict[str, Any]) -> bytes:
    """The card dictionary as the XML document (UTF-8, tab-indented like CHAI's examples,
    ending with a newline)."""
    root = ET.Element(f"{{{NAMESPACE}}}AppliedModelCard")
    _append(root, card)
    ET.indent(root, space="\t")
    text = ET.tostring(root, encoding="unicode", default_namespace=NAMESPACE)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode("utf-8")


def _append(parent: ET.Element, block: dict[str, Any]) -> None:
    for tag, value in block.items():
        for item in value if isinstance(value, list) else [value]:
            element = ET.SubElement(parent, f"{{{NAMESPACE}}}{tag}")
            if isinstance(item, dict):
                _append(element, item)
            else:
                element.text = item


# --- The report ----------------------------------------------------------------------------------


def software_id() -> str:
    """What produced the card (CHAI's `chaiMcSoftwareId`)."""
    try:
        release = version("llm-governance")
    except PackageNotFoundError:
        release = "unknown"
    return f"llm-governance {release} (audits.reports.chai)"


def file_name(project: Project, format: str) -> str:
    return f"{project.slug}-chai-model-card.{format}"


def chai_content(
    project: Project, *, chain: dict[str, Any], progress: Progress = no_progress
) -> tuple[dict[str, Any], bytes]:
    """What the CHAI report says (a function of the data only) and the card's XML; the XML is
    validated against CHAI's schema, and an invalid card raises `CardInvalid`."""
    built = build_card(project, progress)
    xml = card_xml(built.card)
    progress(60, "Validating the card against CHAI's schema")
    problems = validate_chai(xml)
    if problems:
        raise CardInvalid("The CHAI card does not validate: " + "; ".join(problems))
    content = {
        "format": REPORT_FORMAT,
        "version": 1,
        "kind": KIND,
        "project": {"slug": project.slug, "name": project.name},
        "chain": chain,
        "standard": {
            "name": "CHAI Applied Model Card",
            "version": "v0.2",
            "namespace": NAMESPACE,
            "schema_sha256": hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest(),
        },
        "card": built.card,
        "key_metrics_evidence": built.evidence,
        "release_version_source": built.release_version_source,
        "missing_facts": built.missing,
        "xml_sha256": hashlib.sha256(xml).hexdigest(),
    }
    return content, xml


def build_chai(
    project: Project,
    *,
    chain: dict[str, Any],
    progress: Progress = no_progress,
    format: str = "xml",
) -> Built:
    """The CHAI Applied Model Card of `project` as "xml" (the card itself) or "pdf" (a
    readable rendering carrying the XML as `chaiMcXml`, `chaiMcSoftwareId`, and as an
    attached file)."""
    if format not in FORMATS:
        raise ValueError(f"The CHAI model card comes as {', '.join(FORMATS)}, not {format!r}.")
    content, xml = chai_content(project, chain=chain, progress=progress)
    body = xml if format == "xml" else chai_pdf(project, content, xml, progress)
    progress(95, "Card written")
    return Built(
        content=content,
        body=body,
        format=format,
        file_name=file_name(project, format),
        missing_facts=list(content["missing_facts"]),
    )


# --- The PDF rendering ---------------------------------------------------------------------------

# Element names in words where splitting the CamelCase name is not enough.
_HEADINGS = {
    "EHRCompatibility": "EHR compatibility",
    "AISystemFacts": "AI system facts",
    "UsefulnessUsabilityEfficacy": "Usefulness, usability and efficacy",
    "FairnessEquity": "Fairness and equity",
    "SafetyReliability": "Safety and reliability",
    "OutputAndInputDataTypes": "Output and input data types",
    "IntendedUseAndWorkflow": "Intended use and workflow",
    "ValidationProcessAndJustification": "Validation process and justification",
    "KnownBiasesOrEthicalConsiderations": "Known biases or ethical considerations",
    "KnownRisksAndLimitations": "Known risks and limitations",
    "OutcomesAndOutputs": "Outcomes and outputs",
    "UsesAndDirections": "Uses and directions",
}


def heading(element: str) -> str:
    """An element name in words: "ModelDeveloper" -> "Model developer"."""
    if element in _HEADINGS:
        return _HEADINGS[element]
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", element).split(" ")
    return " ".join([words[0], *(w.lower() for w in words[1:])])


def _fields(block: dict[str, Any]) -> list[dict[str, Any]]:
    """A block's text fields for the template: label, text, lines (for lists), missing."""
    fields = []
    for tag, value in block.items():
        if isinstance(value, dict):
            items = [item for group in value.values() for item in group]
            fields.append({"label": heading(tag), "text": "", "lines": items, "missing": False})
        else:
            fields.append(
                {
                    "label": heading(tag),
                    "text": value,
                    "lines": [],
                    "missing": value.startswith("Not provided:"),
                }
            )
    return fields


def pdf_context(project: Project, content: dict[str, Any]) -> dict[str, Any]:
    """What templates/reports/chai.html shows: the card's blocks in CHAI's order, each with a
    heading level, its text fields and (for key metrics) its results."""
    card = content["card"]
    blocks: list[dict[str, Any]] = []

    def block(title: str, level: int, fields: dict[str, Any], results: Any = None) -> None:
        blocks.append(
            {"title": title, "level": level, "fields": _fields(fields), "results": results}
        )

    for name in ("BasicInfo", "ReleaseInfo", "ModelSummary", "UsesAndDirections", "Warnings"):
        block(heading(name), 2, card[name])
    block("Trust ingredients", 2, {})
    for name in ("AISystemFacts", "TransparencyInformation"):
        block(heading(name), 3, card["TrustIngredients"][name])
    block("Key metrics", 2, {})
    for category in CATEGORIES:
        metric = card["KeyMetrics"][category]
        results = [
            {
                "label": result["Label"],
                "value": value_text(json.loads(result["ValueJson"])),
            }
            for result in metric["Results"]["MetricResult"]
        ]
        block(heading(category), 3, {k: v for k, v in metric.items() if k != "Results"}, results)
    block("Resources", 2, card["Resources"])
    missing = [
        FACTS_BY_KEY[key].label if key in FACTS_BY_KEY else OTHER_MISSING.get(key, key)
        for key in content["missing_facts"]
    ]
    return {
        "project": content["project"],
        "blocks": blocks,
        "bibliography": card["Bibliography"],
        "missing": missing,
        "level": LEVEL,
        "standard": content["standard"],
        "xml_sha256": content["xml_sha256"],
        "chain": content["chain"],
        "software_id": software_id(),
    }


OTHER_MISSING = {
    MISSING_DESCRIPTION: "Project description",
    MISSING_RELEASE_VERSION: "Model version",
    MISSING_KEY_METRICS: "Key metrics (no designated evaluation run)",
}


def chai_pdf(project: Project, content: dict[str, Any], xml: bytes, progress: Progress) -> bytes:
    """The card rendered for reading (PDF/A-3b), with CHAI's metadata keys and the XML."""
    progress(70, "Rendering the PDF")
    html = render_to_string("reports/chai.html", pdf_context(project, content))
    return render_pdf(
        html,
        title=f"CHAI Applied Model Card: {project.name}",
        attachments=[
            Attachment(
                name=XML_ATTACHMENT,
                data=xml,
                mime="application/xml",
                description="The CHAI Applied Model Card v0.2 (XML) this document renders",
                relationship="Source",
            )
        ],
        info={"chaiMcXml": xml.decode("utf-8"), "chaiMcSoftwareId": software_id()},
    )
