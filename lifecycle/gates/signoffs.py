"""What a gate signature covers, whether it still holds, and what happens when it stops.

The manifest is the canonical JSON of everything a signer vouches for: the project and its
risk tier, the gate and review round, the checklist template and sign-off policy versions, the
required roles, and every item's status, justification and evidence hashes. A signature stays
valid while its row is untouched and the manifest rebuilt from today's data is the one signed.
"""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from audits.models import AuditEvent
from audits.trail import record
from governance.models import Membership, User
from governance.roles import Role
from lifecycle import notifications
from lifecycle.checklists.models import ChecklistItem, Evidence
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.gates.models import (
    Gate,
    GateState,
    Signature,
    SignatureInvalidation,
)
from lifecycle.gates.readiness import Readiness, readiness_of
from lifecycle.gates.transitions import Move, gate_move, lock_gate, next_phase_to_hold

MANIFEST_VERSION = 1


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _evidence_entry(evidence: Evidence) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": evidence.pk, "kind": evidence.kind}
    if evidence.kind == Evidence.Kind.FILE:
        entry["sha256"] = evidence.sha256
    elif evidence.kind == Evidence.Kind.LINK:
        entry["url"] = evidence.url
    else:
        entry["sha256"] = sha256_text(evidence.note)
    return entry


def build_manifest(gate: Gate) -> dict[str, Any]:
    """Everything a signature on `gate` covers, from the current data."""
    project = gate.project
    active = Evidence.objects.filter(withdrawn_at__isnull=True).order_by("id")
    items = (
        ChecklistItem.objects.filter(gate=gate)
        .order_by("position")
        .prefetch_related(Prefetch("evidence", queryset=active, to_attr="active_evidence"))
    )
    readiness = readiness_of(gate)
    return {
        "manifest_version": MANIFEST_VERSION,
        "project": {"slug": project.slug, "name": project.name, "risk_tier": project.risk_tier},
        "gate": {
            "id": gate.pk,
            "phase": gate.phase,
            "review_round": gate.review_round,
            "cycle": gate.cycle,
        },
        "checklist_template": project.checklist_template.version,
        "signoff_policy": project.signoff_policy.version,
        "required_roles": sorted(readiness.required_roles),
        "evaluation": _evaluation_section(readiness),
        "items": [
            {
                "key": item.key,
                "title": item.title,
                "required": item.required,
                "status": item.status,
                "justification": item.justification,
                "evidence": [_evidence_entry(e) for e in item.active_evidence],
            }
            for item in items
        ],
    }


def record_fields(signature: Signature) -> dict[str, Any]:
    """The signature row's own content, sealed by `record_sha256`."""
    return {
        "gate": signature.gate_id,
        "review_round": signature.review_round,
        "signer": signature.signer_id,
        "signer_name": signature.signer_name,
        "role": signature.role,
        "meaning": signature.meaning,
        "reason": signature.reason,
        "signed_at": signature.signed_at.isoformat(timespec="microseconds"),
        "manifest_sha256": signature.manifest_sha256,
    }


def seal(signature: Signature) -> str:
    return sha256_text(canonical(record_fields(signature)))


# --- Validity ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    """Whether a signature still holds, and if not, every reason in plain words."""

    signature: Signature
    reasons: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons


def _describe_changes(signed: dict, current: dict) -> list[str]:
    changes = []
    for key in (
        "project",
        "gate",
        "checklist_template",
        "signoff_policy",
        "required_roles",
        "evaluation",
    ):
        if signed.get(key) != current.get(key):
            changes.append(
                f"{key.replace('_', ' ')} is now {current.get(key)!r} (signed: {signed.get(key)!r})"
            )
    signed_items = {item["key"]: item for item in signed.get("items", [])}
    current_items = {item["key"]: item for item in current.get("items", [])}
    for key in sorted(signed_items.keys() | current_items.keys()):
        before, now = signed_items.get(key), current_items.get(key)
        if before is None or now is None:
            changes.append(f"item {key} {'appeared' if before is None else 'disappeared'}")
            continue
        for part in ("status", "justification", "required"):
            if before[part] != now[part]:
                changes.append(
                    f"item {key}: {part} is now {now[part]!r} (signed: {before[part]!r})"
                )
        if before["evidence"] != now["evidence"]:
            changes.append(f"item {key}: evidence changed")
    return changes or ["the signed content differs from the current content"]


def verify(signature: Signature) -> Verdict:
    """Recompute the signature's record hash and manifest from the current data."""
    verdict = Verdict(signature)
    if sha256_text(signature.manifest) != signature.manifest_sha256:
        verdict.reasons.append("the stored manifest does not match its SHA-256")
    if seal(signature) != signature.record_sha256:
        verdict.reasons.append(
            "the signature record was altered after signing (signer, role, meaning, time, gate "
            "or manifest hash no longer match the record's seal)"
        )
    try:
        signed = json.loads(signature.manifest)
    except json.JSONDecodeError:
        signed = {}
    current = build_manifest(Gate.objects.select_related("project").get(pk=signature.gate_id))
    if canonical(current) != signature.manifest:
        verdict.reasons.extend(_describe_changes(signed, current))
    verdict.reasons.extend(_stored_files_problems(signature.gate_id))
    invalidation = SignatureInvalidation.objects.filter(signature=signature).first()
    if invalidation is not None:
        verdict.reasons.insert(0, f"{invalidation.get_kind_display()}: {invalidation.cause}")
    return verdict


def _stored_files_problems(gate_id: int) -> list[str]:
    """Evidence files whose bytes in storage no longer hash to what was recorded."""
    problems = []
    files = Evidence.objects.filter(
        item__gate_id=gate_id, kind=Evidence.Kind.FILE, withdrawn_at__isnull=True
    )
    for evidence in files:
        digest = hashlib.sha256()
        try:
            with evidence.file.open("rb") as stored:
                for chunk in iter(lambda: stored.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            problems.append(f"evidence file “{evidence.original_name}” is missing from storage")
            continue
        if digest.hexdigest() != evidence.sha256:
            problems.append(
                f"evidence file “{evidence.original_name}” changed on disk (recorded SHA-256 "
                f"{evidence.sha256[:12]}…, now {digest.hexdigest()[:12]}…)"
            )
    return problems


def current_signatures(gate: Gate) -> QuerySet[Signature]:
    """Signatures of the gate's current review round that nothing has invalidated."""
    return Signature.objects.filter(
        gate=gate, review_round=gate.review_round, invalidation__isnull=True
    ).select_related("signer")


def stale_signatures(gate: Gate) -> list[Signature]:
    """Current signatures whose signed manifest no longer matches the gate's content."""
    signatures = list(current_signatures(gate))
    if not signatures:
        return []
    manifest = canonical(build_manifest(gate))
    return [s for s in signatures if s.manifest != manifest]


def invalidation_summary(stale: list[Signature], gate: Gate) -> dict[str, Any]:
    """What an audit event says about the signatures its change invalidated."""
    if not stale:
        return {}
    summary: dict[str, Any] = {
        "invalidated_signatures": [s.pk for s in stale],
        "gate_reopened": gate.state == GateState.APPROVED,
    }
    held = next_phase_to_hold(gate) if gate.state == GateState.APPROVED else None
    if held is not None:
        summary["next_gate_locked"] = held.phase
    return summary


def invalidate(
    *, gate: Gate, stale: list[Signature], event: AuditEvent, actor: User | None, cause: str
) -> None:
    """Record why `stale` signatures stopped counting and put the gate back to review.

    A new review round starts so that the signers can sign the changed content afresh; an
    approved gate goes back to in review and says so. Runs in the changing service's
    transaction, after its audit event (which the invalidation rows point at).
    """
    if not stale:
        return
    SignatureInvalidation.objects.bulk_create(
        SignatureInvalidation(
            signature=s,
            kind=SignatureInvalidation.Kind.INVALIDATED,
            cause=cause,
            cause_event=event,
            changed_by=actor,
        )
        for s in stale
    )
    now = timezone.now()
    note = f"Reopened {now:%Y-%m-%d %H:%M %Z}: {cause} — {len(stale)} signature(s) invalidated."
    was_approved = gate.state == GateState.APPROVED
    gate_move(lock_gate(gate), Move.CONTENT_CHANGED, by=actor, note=note, now=now)
    gate.refresh_from_db()
    # The people who must look again are told once the change commits.
    if was_approved:
        notifications.gate_reopened(gate, cause, invalidated=stale, by=actor)
    elif gate.state == GateState.IN_REVIEW:
        notifications.gate_entered_review(gate)


def supersede(
    gate: Gate, *, actor: User | None, event: AuditEvent, cause: str, all_rounds: bool = False
) -> int:
    """Mark signatures that still stood as superseded: those of earlier review rounds (a new
    round started), or all of them (a new periodic review of the monitoring gate started)."""
    standing = Signature.objects.filter(gate=gate, invalidation__isnull=True)
    if not all_rounds:
        standing = standing.filter(review_round__lt=gate.review_round)
    rows = [
        SignatureInvalidation(
            signature=s,
            kind=SignatureInvalidation.Kind.SUPERSEDED,
            cause=cause,
            cause_event=event,
            changed_by=actor,
        )
        for s in standing
    ]
    SignatureInvalidation.objects.bulk_create(rows)
    return len(rows)


# --- What a gate still needs --------------------------------------------------------------------


def roles_that_may_sign(user: User, gate: Gate) -> list[str]:
    """The roles `user` holds on the gate's project that can put a signature on it."""
    held = Membership.objects.filter(project=gate.project_id, user=user).values_list(
        "role", flat=True
    )
    return sorted(role for role in held if role != Role.AUDITOR)


def record_signed_content_change(
    actor: User | None,
    gate: Gate,
    *,
    action: str,
    target: Any,
    cause: str,
    target_type: str = "",
    target_id: int | str = "",
    target_text: str = "",
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
) -> None:
    """Audit a change to what the gate's signatures cover, and invalidate the signatures it
    broke (reopening the gate if it was approved), all in the caller's transaction.

    Every service that changes signed content (items, evidence, criteria, evaluation results,
    project details) ends with this call."""
    gate = Gate.objects.select_related(
        "project__checklist_template", "project__signoff_policy"
    ).get(pk=gate.pk)
    stale = stale_signatures(gate)
    event = record(
        actor=actor,
        action=action,
        project=gate.project,
        target=target,
        target_type=target_type,
        target_id=target_id,
        target_text=target_text,
        before=before,
        after={**(after or {}), **invalidation_summary(stale, gate)},
        reason=reason,
    )
    invalidate(gate=gate, stale=stale, event=event, actor=actor, cause=cause)


def _run_section(run: EvaluationRun) -> dict[str, Any]:
    section = {
        "run": run.pk,
        "file_sha256": run.sha256,
        "model_version": run.model_version.label,
        "dataset_version": run.dataset_version.label,
        "dataset_sha256": run.dataset_version.sha256,
        "engine_version": run.provenance.get("engine_version"),
        "seed": run.seed,
        "resamples": run.resamples,
        "results": [
            [
                r.scope,
                r.group_attribute,
                r.group_value,
                r.metric,
                r.value,
                r.ci_low,
                r.ci_high,
                r.n,
            ]
            for r in run.results.order_by("scope", "group_attribute", "group_value", "metric")
        ],
    }
    if run.subset_reason:
        section["subset_reason"] = run.subset_reason
    return section


def _evaluation_section(readiness: Readiness) -> dict[str, Any]:
    """What a signature covers of the evaluation: the run (or runs) the gate is judged on,
    their numbers, the verdicts. One run keeps the shape manifests always had, so signatures
    made before designation existed still verify."""
    runs = readiness.runs
    section: dict[str, Any] = {"run": None}
    if len(runs) == 1:
        section = _run_section(runs[0])
    elif runs:
        section = {"runs": [_run_section(run) for run in runs]}
    section["criteria"] = [
        {
            "expression": v.criterion.expression,
            "required": v.criterion.required,
            "verdict": v.status,
            "observed": v.observed,
        }
        for v in readiness.verdicts
    ]
    return section
