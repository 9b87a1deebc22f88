"""The decision dossier: a project's decision record as PDF/A-3b, its content embedded as JSON.

`build_dossier` reads everything the committee decided on — the project and its intended use,
the model and dataset versions, every checklist item with its evidence hashes, every gate with
each review round, every signature manifested (printed name, role, meaning, UTC time, manifest
hash) and its invalidation, the criteria judged on the gate's evidence, the evaluation results
with intervals, subgroups and charts, the monitoring history (the plan, every batch with its
signals, the latest drift, the trends that signalled) and every incident with its timeline —
into one JSON-able `content` dict, and prints the same content as pages
(`templates/reports/dossier.html`). The PDF carries `canonical_json(content)` as its associated
file "dossier.json", so an auditor can read the pages and check the data.

With `gate_phase`, the dossier covers one gate's decision only: that phase's items, gate and
evaluation runs (the "gate-only" dossier); the monitoring history and the incidents belong to
the monitoring gate's.

Readiness, criteria verdicts, signature seals, trends and charts are the product's own
functions (`lifecycle.gates.readiness`, `.criteria`, `.signoffs`, `lifecycle.evaluations.charts`,
`lifecycle.monitoring.trends` and `.charts`), so the dossier says what the gate panel and the
monitoring page say. Reads are batched: the number of queries does not grow with the number of
items, evidence, signatures, runs, batches, signals or incidents.
"""

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db.models import Prefetch, Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from audits.models import Action, AuditEvent
from audits.reports.common import Built, Progress, canonical_json, no_progress
from audits.reports.pdf import Attachment, render_pdf
from audits.trail import chain_key
from governance.models import Project, User
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem, Evidence
from lifecycle.evaluations import charts
from lifecycle.evaluations.models import (
    DatasetVersion,
    EvaluationResult,
    EvaluationRun,
    ModelVersion,
    ResultScope,
    RunStatus,
)
from lifecycle.gates.models import Gate, GateCriterion, GateState, Signature, SignatureMeaning
from lifecycle.gates.readiness import Readiness, gate_readiness
from lifecycle.gates.signoffs import seal, sha256_text
from lifecycle.monitoring import charts as monitoring_charts
from lifecycle.monitoring.models import (
    Incident,
    IncidentEvent,
    MonitoringBatch,
    MonitoringPlan,
    MonitoringSignal,
)
from lifecycle.monitoring.selectors import drift_rows, review_due
from lifecycle.monitoring.trends import plan_trends
from lifecycle.phases import Phase
from lifecycle.projects.facts import FACTS, FACTS_BY_KEY
from lifecycle.projects.models import ModelFacts

KIND = "dossier"
NO_INCIDENTS = "No incident has been recorded for this project."
NO_MONITORING = "The project has no monitoring plan: no monitoring batch has been received."
VERIFY_COMMAND = "python manage.py verify_report FILE"


def build_dossier(
    project: Project,
    *,
    chain: dict[str, Any],
    progress: Progress = no_progress,
    gate_phase: str | None = None,
) -> Built:
    """The project's decision dossier (or, with `gate_phase`, one gate's decision) as PDF/A-3b
    with its content embedded as "dossier.json"."""
    if gate_phase is not None and gate_phase not in Phase.values:
        raise ValueError(f"Unknown phase {gate_phase!r}.")
    progress(2, "Reading the project")
    content, figures, trend_figures = _content_and_figures(
        project, chain=chain, progress=progress, gate_phase=gate_phase
    )

    progress(80, "Rendering the pages")
    title = _title(project, gate_phase)
    html = render_to_string(
        "reports/dossier.html",
        {
            "title": title,
            "content": content,
            "facts": _fact_rows(content["model_facts"]),
            "runs": [
                _run_page(entry, figures.get(entry["number"], []))
                for entry in content["evaluation_runs"]
            ],
            "trend_figures": [_figure(chart) for chart in trend_figures],
            "no_incidents": NO_INCIDENTS,
            "no_monitoring": NO_MONITORING,
            "verify_command": VERIFY_COMMAND,
        },
    )
    body = render_pdf(
        html,
        title=title,
        attachments=[
            Attachment(
                name="dossier.json",
                data=canonical_json(content),
                mime="application/json",
                description="The dossier's content as canonical JSON: the data these pages print.",
                relationship="Data",
            )
        ],
    )
    progress(100, "Dossier ready")
    today = timezone.now().astimezone(UTC).date().isoformat()
    scope = f"{gate_phase}-gate-dossier" if gate_phase else "dossier"
    return Built(
        content=content, body=body, format="pdf", file_name=f"{project.slug}-{scope}-{today}.pdf"
    )


def _title(project: Project, gate_phase: str | None) -> str:
    if gate_phase:
        return f"{Phase(gate_phase).label} gate decision — {project.name}"
    return f"Decision dossier — {project.name}"


# --- Content -----------------------------------------------------------------------------------


def dossier_content(
    project: Project,
    *,
    chain: dict[str, Any],
    progress: Progress = no_progress,
    gate_phase: str | None = None,
) -> tuple[dict[str, Any], dict[int, list[charts.Chart]]]:
    """The dossier's content (a function of the data only: no generation time, no requester)
    and the charts of each detailed run, keyed by run number, for the pages."""
    content, figures, _ = _content_and_figures(
        project, chain=chain, progress=progress, gate_phase=gate_phase
    )
    return content, figures


def _content_and_figures(
    project: Project,
    *,
    chain: dict[str, Any],
    progress: Progress,
    gate_phase: str | None,
) -> tuple[dict[str, Any], dict[int, list[charts.Chart]], list[charts.Chart]]:
    """`dossier_content`, with the trend charts of the monitoring section for the pages."""
    project = Project.objects.select_related("owner", "checklist_template", "signoff_policy").get(
        pk=project.pk
    )
    facts = ModelFacts.objects.filter(project=project).first()
    content: dict[str, Any] = {
        "format": "llm-governance-report",
        "version": 1,
        "kind": KIND,
        "project": {"slug": project.slug, "name": project.name},
        "scope": {"gate_phase": gate_phase},
        "project_facts": _project_facts(project),
        "model_facts": {k: str(v) for k, v in sorted((facts.facts if facts else {}).items())},
        "model_versions": [
            _model_version(m)
            for m in ModelVersion.objects.filter(project=project).select_related("created_by")
        ],
        "dataset_versions": [
            _dataset_version(d)
            for d in DatasetVersion.objects.filter(project=project).select_related("created_by")
        ],
    }

    gates = list(
        Gate.objects.filter(project=project).select_related("decided_by").order_by("position")
    )
    if gate_phase:
        gates = [g for g in gates if g.phase == gate_phase]
    progress(10, "Reading the checklist and its evidence")
    items_by_gate = _items_by_gate(project, gates)

    progress(30, "Reading the gates, signatures and criteria")
    readiness = gate_readiness(gates)
    signatures_by_gate = _signatures_by_gate(gates)
    events = _gate_events(project, chain["length"])
    judged_for: dict[int, list[str]] = defaultdict(list)
    for gate in gates:
        for run in readiness[gate.pk].runs:
            judged_for[run.pk].append(gate.phase)
    content["phases"] = [
        {
            "phase": gate.phase,
            "label": Phase(gate.phase).label,
            "gate": _gate(gate, readiness[gate.pk], signatures_by_gate.get(gate.pk, []), events),
            "items": [_item(item) for item in items_by_gate.get(gate.pk, [])],
        }
        for gate in gates
    ]

    progress(55, "Reading the evaluation runs and their results")
    runs = list(
        EvaluationRun.objects.filter(Q(gate__in=gates) | Q(pk__in=list(judged_for)))
        .select_related("gate", "model_version", "dataset_version", "requested_by")
        .order_by("number")
    )
    detailed = [run.pk for run in runs if run.pk in judged_for]
    results: dict[int, list[EvaluationResult]] = defaultdict(list)
    for result in EvaluationResult.objects.filter(run__in=detailed).order_by(
        "scope", "group_attribute", "group_value", "metric"
    ):
        results[result.run_id].append(result)
    metrics_named = {
        run_id: [
            v.criterion.metric
            for gate in gates
            if gate.phase in phases
            for v in readiness[gate.pk].verdicts
        ]
        for run_id, phases in judged_for.items()
    }
    content["evaluation_runs"] = []
    figures: dict[int, list[charts.Chart]] = {}
    for index, run in enumerate(runs):
        progress(55 + (20 * index) // max(len(runs), 1), f"Evaluation run {run.number}")
        entry = _run(run, judged_for.get(run.pk, []))
        if run.pk in judged_for:
            entry["results"] = [_result(r) for r in results[run.pk]]
            run_results = results[run.pk]
            groups: dict[str, dict[str, dict[str, EvaluationResult]]] = {}
            for r in run_results:
                if r.scope == ResultScope.GROUP:
                    groups.setdefault(r.group_attribute, {}).setdefault(r.group_value, {})[
                        r.metric
                    ] = r
            run_charts = charts.run_charts(
                [r for r in run_results if r.scope == ResultScope.OVERALL],
                groups,
                metrics_named.get(run.pk, []),
                prefix=f"dossier-run-{run.number}-",
            )
            entry["charts"] = [_chart(c) for c in run_charts]
            figures[run.number] = run_charts
        content["evaluation_runs"].append(entry)

    progress(76, "Reading the monitoring history and the incidents")
    trend_figures: list[charts.Chart] = []
    if gate_phase in (None, Phase.MONITORING):
        content["monitoring"], trend_figures = _monitoring(project)
        content["incidents"] = _incidents(project)
    else:
        # Another gate's decision: monitoring is the monitoring gate's record.
        content["monitoring"], content["incidents"] = None, []
    content["chain"] = chain
    return content, figures, trend_figures


def _when(value: datetime | None) -> str | None:
    """An ISO-8601 UTC timestamp to the second, as every report writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(user: User | None) -> str | None:
    if user is None:
        return None
    return user.get_full_name() or user.get_username()


def _number(value: float | None) -> float | None:
    """A finite number, or None: canonical JSON has no NaN or infinity."""
    if value is None or not math.isfinite(value):
        return None
    return value


def _role(role: str) -> dict[str, str]:
    return {"role": role, "label": Role(role).label if role in Role.values else role}


def _project_facts(project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "slug": project.slug,
        "description": project.description,
        "clinical_setting": project.clinical_setting,
        "intended_use": project.intended_use,
        "intended_users": project.intended_users,
        "task_category": project.task_category,
        "task_category_label": project.get_task_category_display(),
        "risk_tier": project.risk_tier,
        "risk_tier_label": project.get_risk_tier_display(),
        "current_phase": project.current_phase,
        "current_phase_label": project.get_current_phase_display(),
        "owner": _name(project.owner),
        "checklist_template": project.checklist_template.version,
        "signoff_policy": project.signoff_policy.version,
        "registered_at": _when(project.created_at),
    }


def _fact_rows(model_facts: dict[str, str]) -> list[tuple[str, str]]:
    """The recorded model facts in the order of the facts form, labelled; facts this version
    does not declare keep their key."""
    rows = [(f.label, model_facts[f.key]) for f in FACTS if (model_facts.get(f.key) or "").strip()]
    rows += [(k, v) for k, v in model_facts.items() if k not in FACTS_BY_KEY and v.strip()]
    return rows


def _model_version(model: ModelVersion) -> dict[str, Any]:
    return {
        "label": model.label,
        "base_model": model.base_model,
        "adaptation": model.adaptation,
        "adaptation_label": model.get_adaptation_display(),
        "notes": model.notes,
        "registered_at": _when(model.created_at),
        "registered_by": _name(model.created_by),
    }


def _dataset_version(dataset: DatasetVersion) -> dict[str, Any]:
    return {
        "label": dataset.label,
        "purpose": dataset.purpose,
        "purpose_label": dataset.get_purpose_display(),
        "description": dataset.description,
        "row_count": dataset.row_count,
        "sha256": dataset.sha256,
        "registered_at": _when(dataset.created_at),
        "registered_by": _name(dataset.created_by),
    }


# --- Checklist -----------------------------------------------------------------------------------


def _items_by_gate(project: Project, gates: list[Gate]) -> dict[int, list[ChecklistItem]]:
    every_evidence = Evidence.objects.select_related("added_by", "withdrawn_by").order_by(
        "added_at", "id"
    )
    items = (
        ChecklistItem.objects.filter(project=project, gate__in=gates)
        .select_related("assignee", "updated_by")
        .prefetch_related(Prefetch("evidence", queryset=every_evidence, to_attr="all_evidence"))
        .order_by("position")
    )
    by_gate: dict[int, list[ChecklistItem]] = defaultdict(list)
    for item in items:
        by_gate[item.gate_id].append(item)
    return by_gate


def _item(item: ChecklistItem) -> dict[str, Any]:
    return {
        "key": item.key,
        "title": item.title,
        "required": item.required,
        "evidence_required": item.evidence_required,
        "owner_role": _role(item.owner_role),
        "status": item.status,
        "status_label": item.get_status_display(),
        "justification": item.justification,
        "assignee": _name(item.assignee),
        "updated_at": _when(item.updated_at),
        "updated_by": _name(item.updated_by),
        "evidence": [_evidence(e) for e in item.all_evidence],  # type: ignore[attr-defined]
    }


def _evidence(evidence: Evidence) -> dict[str, Any]:
    """One piece of evidence as the signature manifest identifies it: a file by its SHA-256, a
    note by the SHA-256 of its text (`signoffs.sha256_text`), a link by its address."""
    entry: dict[str, Any] = {
        "id": evidence.pk,
        "kind": evidence.kind,
        "title": evidence.title,
        "added_by": _name(evidence.added_by),
        "added_at": _when(evidence.added_at),
        "withdrawn": evidence.withdrawn_at is not None,
        "withdrawn_at": _when(evidence.withdrawn_at),
        "withdrawn_by": _name(evidence.withdrawn_by),
        "withdrawal_reason": evidence.withdrawal_reason,
    }
    if evidence.kind == Evidence.Kind.FILE:
        entry.update(
            file_name=evidence.original_name,
            content_type=evidence.content_type,
            size=evidence.size,
            sha256=evidence.sha256,
        )
    elif evidence.kind == Evidence.Kind.LINK:
        entry.update(url=evidence.url, sha256=None)
    else:
        entry.update(note=evidence.note, sha256=sha256_text(evidence.note))
    return entry


# --- Gates, rounds and signatures ----------------------------------------------------------------


def _signatures_by_gate(gates: list[Gate]) -> dict[int, list[Signature]]:
    by_gate: dict[int, list[Signature]] = defaultdict(list)
    for signature in (
        Signature.objects.filter(gate__in=gates)
        .select_related("invalidation", "invalidation__changed_by")
        .order_by("review_round", "signed_at", "id")
    ):
        by_gate[signature.gate_id].append(signature)
    return by_gate


class _GateEvents:
    """The audit events that say how each review round began and ended: submissions (who, when,
    the note, the designated runs), periodic reviews (started by a person, or by monitoring
    reopening the approved gate, with its cause), and the gate state each signature left."""

    def __init__(self, events: Iterable[AuditEvent]):
        self.submissions: dict[tuple[int, int], AuditEvent] = {}
        self.cycles: dict[tuple[int, int], AuditEvent] = {}
        self.state_after_signature: dict[int, str] = {}
        for event in events:
            after = event.after if isinstance(event.after, dict) else {}
            if event.action == Action.SIGNATURE_CREATE:
                if event.target_id.isdigit() and "gate_state" in after:
                    self.state_after_signature[int(event.target_id)] = after["gate_state"]
            elif event.target_id.isdigit():
                gate_id = int(event.target_id)
                if event.action == Action.GATE_SUBMIT:
                    self.submissions[(gate_id, after.get("review_round", 0))] = event
                elif event.action == Action.GATE_START_REVIEW_CYCLE:
                    self.cycles[(gate_id, after.get("cycle", 0))] = event
                elif event.action == Action.GATE_MONITORING_REOPEN:
                    before = event.before if isinstance(event.before, dict) else {}
                    # Only a reopened approval starts a periodic review; an open gate or one
                    # in review keeps its cycle and just shows the cause.
                    if after.get("cycle", 0) != before.get("cycle", 0):
                        self.cycles[(gate_id, after.get("cycle", 0))] = event


def _gate_events(project: Project, head: int) -> _GateEvents:
    """The gate's submissions, review cycles and signings up to the chain head the dossier
    records (never an event after it)."""
    gate_type, signature_type = Gate._meta.label_lower, Signature._meta.label_lower
    return _GateEvents(
        AuditEvent.objects.filter(
            chain__key=chain_key(project),
            sequence__lte=head,
            action__in=[
                Action.GATE_SUBMIT,
                Action.GATE_START_REVIEW_CYCLE,
                Action.GATE_MONITORING_REOPEN,
                Action.SIGNATURE_CREATE,
            ],
            target_type__in=[gate_type, signature_type],
        ).order_by("sequence")
    )


def _gate(
    gate: Gate, readiness: Readiness, signatures: list[Signature], events: _GateEvents
) -> dict[str, Any]:
    conditions = [c for c in readiness.conditions if c.kind == "signature"]
    return {
        "phase": gate.phase,
        "state": gate.state,
        "state_label": gate.get_state_display(),
        "review_round": gate.review_round,
        "cycle": gate.cycle,
        "opened_at": _when(gate.opened_at),
        "submitted_at": _when(gate.submitted_at),
        "decided_at": _when(gate.decided_at),
        "decided_by": _name(gate.decided_by),
        "decision_note": gate.decision_note,
        "reopened_at": _when(gate.reopened_at),
        "reopened_reason": gate.reopened_reason,
        "required_roles": [
            {**_role(role), "state": condition.state}
            for role, condition in zip(readiness.required_roles, conditions, strict=True)
        ],
        "evidence": {
            "designated": readiness.designated,
            "runs": [run.number for run in readiness.runs],
            "newer_run": readiness.newer_run.number if readiness.newer_run else None,
        },
        "criteria": [
            {
                "expression": v.criterion.expression,
                "metric": v.criterion.metric,
                "required": v.criterion.required,
                "min_records": v.criterion.min_records,
                "min_group_records": v.criterion.min_group_records,
                "verdict": v.status,
                "observed": _number(v.observed),
                "observed_text": v.observed_text,
                "detail": v.detail,
                "runs": v.runs,
            }
            for v in readiness.verdicts
        ],
        "blockers": readiness.blockers,
        "periodic_reviews": [
            {
                "cycle": cycle,
                "started_at": _when(event.recorded_at),
                "started_by": event.actor_name,
                "cause": event.reason if event.action == Action.GATE_MONITORING_REOPEN else "",
            }
            for (gate_id, cycle), event in sorted(events.cycles.items())
            if gate_id == gate.pk
        ],
        "rounds": _rounds(gate, signatures, events),
    }


def _rounds(gate: Gate, signatures: list[Signature], events: _GateEvents) -> list[dict[str, Any]]:
    """Each review round: how it began, every signature in it, and how it ended."""
    by_round: dict[int, list[Signature]] = defaultdict(list)
    for signature in signatures:
        by_round[signature.review_round].append(signature)
    rounds = []
    last = max([gate.review_round, *by_round])
    for number in range(1, last + 1):
        in_round = by_round.get(number, [])
        submitted = events.submissions.get((gate.pk, number))
        rounds.append(
            {
                "round": number,
                "submission": (
                    {
                        "at": _when(submitted.recorded_at),
                        "by": submitted.actor_name,
                        "note": submitted.reason,
                        "cycle": (submitted.after or {}).get("cycle"),
                        "evidence_runs": (submitted.after or {}).get("evidence_runs", []),
                    }
                    if submitted is not None
                    else None
                ),
                "decision": _decision(gate, number, in_round, events),
                "signatures": [_signature(s, events) for s in in_round],
            }
        )
    return rounds


def _decision(
    gate: Gate, number: int, in_round: list[Signature], events: _GateEvents
) -> dict[str, Any]:
    """How the round ended: the signature that approved the gate or requested changes, or why
    it ended without a decision (its signatures were invalidated or superseded)."""
    for signature in in_round:
        state = events.state_after_signature.get(signature.pk)
        if state is None and signature.meaning == SignatureMeaning.REJECT:
            state = GateState.CHANGES_REQUESTED
        if state in (GateState.APPROVED, GateState.CHANGES_REQUESTED):
            return {
                "outcome": state,
                "outcome_label": GateState(state).label,
                "by": signature.signer_name,
                "role": signature.role,
                "at": _when(signature.signed_at),
                "note": signature.reason,
            }
    if number < gate.review_round:
        causes = sorted(
            {s.invalidation.cause for s in in_round if getattr(s, "invalidation", None) is not None}
        )
        return {
            "outcome": "ended",
            "outcome_label": "Ended without a decision: a new review round started",
            "note": "; ".join(causes),
        }
    return {
        "outcome": gate.state,
        "outcome_label": f"No decision yet (the gate is {gate.get_state_display().lower()})",
    }


def _signature(signature: Signature, events: _GateEvents) -> dict[str, Any]:
    """A signature manifested (21 CFR 11.50): printed name, role, meaning, UTC time and the
    manifest hash, with whether its stored manifest and record still match their seals
    (`signoffs.sha256_text`, `signoffs.seal`) and its invalidation, if any."""
    invalidation = getattr(signature, "invalidation", None)
    return {
        "id": signature.pk,
        "review_round": signature.review_round,
        "printed_name": signature.signer_name,
        "role": signature.role,
        "role_label": signature.get_role_display(),
        "meaning": signature.meaning,
        "meaning_label": signature.get_meaning_display(),
        "reason": signature.reason,
        "signed_at": _when(signature.signed_at),
        "manifest_sha256": signature.manifest_sha256,
        "record_sha256": signature.record_sha256,
        "manifest_intact": sha256_text(signature.manifest) == signature.manifest_sha256,
        "record_intact": seal(signature) == signature.record_sha256,
        "gate_state_after": events.state_after_signature.get(signature.pk),
        "invalidation": (
            {
                "kind": invalidation.kind,
                "kind_label": invalidation.get_kind_display(),
                "cause": invalidation.cause,
                "at": _when(invalidation.at),
                "by": _name(invalidation.changed_by),
            }
            if invalidation is not None
            else None
        ),
    }


# --- Evaluations ---------------------------------------------------------------------------------


def _run(run: EvaluationRun, judged_for: list[str]) -> dict[str, Any]:
    provenance = run.provenance if isinstance(run.provenance, dict) else {}
    return {
        "number": run.number,
        "gate_phase": run.gate.phase,
        "judged_for": judged_for,
        "status": run.status,
        "status_label": run.get_status_display(),
        "model_version": run.model_version.label,
        "dataset_version": run.dataset_version.label,
        "dataset_sha256": run.dataset_version.sha256,
        "file_name": run.original_name,
        "file_size": run.size,
        "file_sha256": run.sha256,
        "subset_reason": run.subset_reason,
        "n_records": run.n_records,
        "task": run.task,
        "seed": run.seed,
        "resamples": run.resamples,
        "engine_version": provenance.get("engine_version"),
        "ci_method": provenance.get("ci_method"),
        "uploaded_by": _name(run.requested_by),
        "uploaded_at": _when(run.created_at),
        "finished_at": _when(run.finished_at),
        "error_message": run.error_message if run.status == RunStatus.FAILED else "",
        "warnings": [str(w) for w in run.warnings] if isinstance(run.warnings, list) else [],
    }


def _result(result: EvaluationResult) -> dict[str, Any]:
    return {
        "scope": result.scope,
        "group_attribute": result.group_attribute,
        "group_value": result.group_value,
        "metric": result.metric,
        "value": _number(result.value),
        "ci_low": _number(result.ci_low),
        "ci_high": _number(result.ci_high),
        "n": result.n,
        "reason": result.reason,
        "warnings": [str(w) for w in result.warnings] if isinstance(result.warnings, list) else [],
    }


def _run_page(entry: dict[str, Any], figures: list[charts.Chart]) -> dict[str, Any]:
    """What the pages print of one run: its results arranged as the run page arranges them
    (overall and fairness rows, one table per subgroup attribute) and its charts."""
    results = entry.get("results") or []
    groups: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for r in results:
        if r["scope"] == ResultScope.GROUP:
            groups.setdefault(r["group_attribute"], {}).setdefault(r["group_value"], {})[
                r["metric"]
            ] = r
    subgroup_tables = []
    for attribute, by_value in groups.items():
        # Non-scalar metrics (the confusion matrix) have no value to print per subgroup.
        metrics = sorted({m for row in by_value.values() for m in row} - {"confusion_matrix"})
        subgroup_tables.append(
            {
                "attribute": attribute,
                "metrics": metrics,
                "rows": [
                    (value, [row.get(m) for m in metrics])
                    for value, row in sorted(by_value.items())
                ],
            }
        )
    return {
        "run": entry,
        "detailed": "results" in entry,
        "overall": [r for r in results if r["scope"] == ResultScope.OVERALL],
        "fairness": [r for r in results if r["scope"] == ResultScope.FAIRNESS],
        "subgroup_tables": subgroup_tables,
        "figures": [_figure(chart) for chart in figures],
    }


# Chart units printed at a quarter millimetre: the run page's 420-unit plots are 105 mm wide,
# leaving room for their data table beside them; wider charts (subgroup bars) print full width
# with the table below.
MM_PER_CHART_UNIT = 0.25
CONTENT_WIDTH_MM = 178
SIDE_BY_SIDE_MAX_MM = 106
_VIEWBOX = re.compile(r'viewBox="0 0 ([0-9.]+) ([0-9.]+)"')
_FONT_FAMILY = re.compile(r'font-family="[^"]*"')


def _figure(chart: charts.Chart) -> dict[str, Any]:
    """A chart as the pages print it: the renderer's SVG drawn in the report's own vendored
    font (the renderer names the browser's system font), at a size that keeps its text
    readable, with its title, description and data table."""
    match = _VIEWBOX.search(chart.svg)
    width = min(float(match.group(1)) * MM_PER_CHART_UNIT, CONTENT_WIDTH_MM) if match else 105
    # Only the root element carries a font-family, and the replacement is a constant: the
    # markup stays the renderer's escaped output.
    svg = _FONT_FAMILY.sub('font-family="Report Sans"', chart.svg, count=1)
    return {
        "title": chart.title,
        "description": chart.description,
        "svg": mark_safe(svg),  # noqa: S308 - the renderer's escaped SVG, one attribute set
        "width_mm": f"{width:.1f}",
        "side_by_side": width <= SIDE_BY_SIDE_MAX_MM,
        "headers": chart.headers,
        "rows": chart.rows,
    }


def _chart(chart: charts.Chart) -> dict[str, Any]:
    """A chart as data: its title, description and the table the page prints beside it."""
    return {
        "title": chart.title,
        "description": chart.description,
        "headers": list(chart.headers),
        "rows": [[str(cell) for cell in row] for row in chart.rows],
    }


# --- Monitoring and incidents --------------------------------------------------------------------


def _monitoring(project: Project) -> tuple[dict[str, Any], list[charts.Chart]]:
    """The monitoring history: the plan (baseline, watched metrics and cohorts, period, review
    interval, alert levels), every batch with its signals, the latest analysed batch's drift
    worst first, and the trends that signalled, as charts with their data tables.

    The same reads as the monitoring page (`lifecycle.monitoring.selectors` and `.trends`), in
    a fixed number of queries. Only stored data: the review date is derived from the plan and
    the monitoring gate, never from the time the dossier is built."""
    plan = (
        MonitoringPlan.objects.filter(project=project)
        .select_related("baseline_run__gate", "updated_by")
        .first()
    )
    section: dict[str, Any] = {"plan": None, "batches": [], "latest_drift": None, "trends": []}
    if plan is None:
        return section, []
    gate = Gate.objects.get(project=project, phase=Phase.MONITORING)
    signals = MonitoringSignal.objects.select_related("incident").order_by("id")
    batches = list(
        MonitoringBatch.objects.filter(project=project)
        .select_related("run", "submitted_by")
        .prefetch_related(Prefetch("signals", queryset=signals))
        .order_by("period_start", "number")
    )
    criteria = GateCriterion.objects.filter(gate=gate).order_by("id")
    section["plan"] = {
        "baseline_run": plan.baseline_run.number,
        "baseline_gate": plan.baseline_run.gate.phase,
        "metrics": [str(m) for m in plan.metrics],
        "cohorts": [str(c) for c in plan.cohorts],
        "starts_on": plan.starts_on.isoformat(),
        "period_days": plan.period_days,
        "review_interval_days": plan.review_interval_days,
        "review_due_at": _when(review_due(plan, gate)),
        "review_overdue_since": _when(plan.review_overdue_since),
        "resamples": plan.resamples,
        "cusum_k": plan.cusum_k,
        "cusum_h": plan.cusum_h,
        "psi_alert": plan.psi_alert,
        "criteria": [{"expression": c.expression, "required": c.required} for c in criteria],
        "updated_at": _when(plan.updated_at),
        "updated_by": _name(plan.updated_by),
    }
    section["batches"] = [_batch(batch) for batch in batches]
    latest = next(
        (b for b in reversed(batches) if b.status == MonitoringBatch.Status.ANALYSED), None
    )
    if latest is not None:
        drift = latest.drift if isinstance(latest.drift, dict) else {}
        section["latest_drift"] = {
            "batch": latest.number,
            "n_baseline": drift.get("n_baseline"),
            "n_current": drift.get("n_current"),
            "rows": [
                {
                    "kind": row.kind,
                    "name": row.name,
                    "psi": _number(row.psi),
                    "ks_statistic": _number(row.ks_statistic),
                    "ks_pvalue": _number(row.ks_pvalue),
                    "wasserstein": _number(row.wasserstein),
                    "chi2_pvalue": _number(row.chi2_pvalue),
                    "alert": row.alert,
                }
                for row in drift_rows(drift, plan.psi_alert)
            ],
        }
    # Every trend that signalled at some batch: what the committee has to look at.
    trend_charts = [
        monitoring_charts.trend_chart(trend, f"dossier-trend-{index}")
        for index, trend in enumerate(
            t for t in plan_trends(plan) if any(point.signals for point in t.points)
        )
    ]
    section["trends"] = [_chart(chart) for chart in trend_charts]
    return section, trend_charts


def _batch(batch: MonitoringBatch) -> dict[str, Any]:
    run = batch.run
    return {
        "number": batch.number,
        "period_start": batch.period_start.isoformat(),
        "period_end": batch.period_end.isoformat(),
        "run": run.number,
        "run_status": run.status,
        "n_records": run.n_records,
        "file_sha256": run.sha256,
        "status": batch.status,
        "status_label": batch.get_status_display(),
        "error_message": batch.error_message,
        "submitted_at": _when(batch.created_at),
        "submitted_by": _name(batch.submitted_by),
        "analysed_at": _when(batch.analysed_at),
        "signals": [_signal(s) for s in batch.signals.all()],
        "required_signals": sum(1 for s in batch.signals.all() if s.required),
    }


def _signal(signal: MonitoringSignal) -> dict[str, Any]:
    return {
        "rule": signal.rule,
        "rule_label": signal.get_rule_display(),
        "metric": signal.metric,
        "scope": signal.scope,
        "group_attribute": signal.group_attribute,
        "group_value": signal.group_value,
        "value": _number(signal.value),
        "limit": _number(signal.limit),
        "required": signal.required,
        "message": signal.message,
        "incident": signal.incident.number if signal.incident is not None else None,
    }


def _incidents(project: Project) -> list[dict[str, Any]]:
    """Every incident of the project in number order, with its whole timeline."""
    timeline = IncidentEvent.objects.select_related("actor").order_by("at", "id")
    return [
        {
            "number": incident.number,
            "title": incident.title,
            "description": incident.description,
            "source": incident.source,
            "source_label": incident.get_source_display(),
            "severity": incident.severity,
            "severity_label": incident.get_severity_display(),
            "status": incident.status,
            "status_label": incident.get_status_display(),
            "owner": _name(incident.owner),
            "reported_by": _name(incident.reported_by),
            "batch": incident.batch.number if incident.batch is not None else None,
            "opened_at": _when(incident.opened_at),
            "resolved_at": _when(incident.resolved_at),
            "resolution": incident.resolution,
            "timeline": [
                {
                    "kind": event.kind,
                    "kind_label": event.get_kind_display(),
                    "text": event.text,
                    "changes": event.changes if isinstance(event.changes, dict) else {},
                    "by": _name(event.actor),
                    "at": _when(event.at),
                }
                for event in incident.events.all()
            ],
        }
        for incident in Incident.objects.filter(project=project)
        .select_related("owner", "reported_by", "batch")
        .prefetch_related(Prefetch("events", queryset=timeline))
        .order_by("number")
    ]
