"""What a gate signature covers, whether it still holds, and what a gate still needs.

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
from governance.models import (
    Membership,
    Signature,
    SignatureInvalidation,
    SignatureMeaning,
    SignOffRequirement,
    User,
)
from governance.roles import Role
from lifecycle import evaluations
from lifecycle.models import ChecklistItem, Evidence, Gate, GateState
from lifecycle.progress import refresh_current_phase
from lifecycle.selectors import blocking_items

MANIFEST_VERSION = 1


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def required_roles(gate: Gate) -> list[str]:
    """Roles whose approval the gate needs under the project's sign-off policy."""
    project = gate.project
    return sorted(
        SignOffRequirement.objects.filter(
            policy_id=project.signoff_policy_id, phase=gate.phase, risk_tier=project.risk_tier
        ).values_list("role", flat=True)
    )


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
        "required_roles": required_roles(gate),
        "evaluation": evaluations.manifest_section(gate),
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
    return {
        "invalidated_signatures": [s.pk for s in stale],
        "gate_reopened": gate.state == GateState.APPROVED,
    }


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
    reopened = gate.state == GateState.APPROVED
    Gate.objects.filter(pk=gate.pk).update(
        review_round=gate.review_round + 1,
        state=GateState.IN_REVIEW if reopened else gate.state,
        reopened_at=now if reopened else gate.reopened_at,
        reopened_reason=(
            f"Reopened {now:%Y-%m-%d %H:%M %Z}: {cause} — {len(stale)} signature(s) invalidated."
            if reopened
            else gate.reopened_reason
        ),
    )
    gate.refresh_from_db()
    if reopened:
        refresh_current_phase(gate.project)


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


@dataclass
class GateConditions:
    """Every condition of a gate's approval, each met or not, for pages, API and decisions."""

    required_roles: list[str]
    approvals_by_role: dict[str, list[Signature]]
    missing_roles: list[str]
    blocking_items: list[ChecklistItem]
    verdicts: list[evaluations.Verdict]
    separation_of_duties_met: bool
    signatures: list[Signature]
    invalidated: list[tuple[Signature, SignatureInvalidation]]

    @property
    def role_rows(self) -> list[tuple[str, bool]]:
        """(role label, approved) for each role the policy requires."""
        return [(Role(r).label, r not in self.missing_roles) for r in self.required_roles]

    @property
    def failing_criteria(self) -> list[evaluations.Verdict]:
        return [v for v in self.verdicts if v.criterion.required and not v.passed]

    @property
    def can_be_approved(self) -> bool:
        return (
            not self.missing_roles
            and not self.blocking_items
            and not self.failing_criteria
            and self.separation_of_duties_met
        )


def evidence_preparers(gate: Gate) -> set[int]:
    return set(
        Evidence.objects.filter(item__gate=gate, withdrawn_at__isnull=True).values_list(
            "added_by_id", flat=True
        )
    )


def gate_conditions(gate: Gate) -> GateConditions:
    required = required_roles(gate)
    signatures = list(current_signatures(gate))
    approvals: dict[str, list[Signature]] = {}
    for signature in signatures:
        if signature.meaning == SignatureMeaning.APPROVE:
            approvals.setdefault(signature.role, []).append(signature)
    approvers = {s.signer_id for group in approvals.values() for s in group}
    preparers = evidence_preparers(gate)
    invalidated = [
        (s, s.invalidation)
        for s in Signature.objects.filter(gate=gate, invalidation__isnull=False)
        .select_related("invalidation", "signer")
        .order_by("-signed_at")
    ]
    return GateConditions(
        required_roles=required,
        approvals_by_role=approvals,
        missing_roles=[role for role in required if role not in approvals],
        blocking_items=list(blocking_items(gate)),
        verdicts=evaluations.criteria_verdicts(gate),
        # The people who prepared the evidence cannot be the only ones approving it.
        separation_of_duties_met=not approvers or bool(approvers - preparers),
        signatures=signatures,
        invalidated=invalidated,
    )


def roles_that_may_sign(user: User, gate: Gate) -> list[str]:
    """The roles `user` holds on the gate's project that can put a signature on it."""
    held = Membership.objects.filter(project=gate.project_id, user=user).values_list(
        "role", flat=True
    )
    return sorted(role for role in held if role != Role.AUDITOR)
