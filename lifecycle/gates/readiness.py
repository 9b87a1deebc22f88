"""What a gate still needs: the one answer every page, the API, the sign-off service and the
signature manifest use.

`gate_readiness` takes any set of gates and answers, for each, every condition of its approval
with its state: the gate's own state, each required checklist item, each criterion judged on
the latest succeeded evaluation run, each role the sign-off policy requires (present, missing,
or invalidated), and separation of duties. It reads in a fixed number of queries however many
gates it is given, so the dashboard asks once for a whole page of projects.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from django.db.models import OuterRef, Subquery

from governance.roles import Role
from lifecycle.checklists.models import SETTLED_STATUSES, ChecklistItem, Evidence
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun, RunStatus
from lifecycle.evaluations.selectors import LATEST_FIRST
from lifecycle.gates import criteria
from lifecycle.gates.models import (
    Gate,
    GateCriterion,
    GateState,
    Signature,
    SignatureInvalidation,
    SignatureMeaning,
    SignOffRequirement,
)
from lifecycle.phases import Phase

ConditionKind = Literal["state", "item", "criterion", "signature", "separation_of_duties"]


@dataclass(frozen=True)
class Condition:
    """One condition of a gate's approval and where it stands, in the committee's words."""

    kind: ConditionKind
    label: str
    state: str  # met, open, locked, changes requested, pass, fail, no data, present, missing, …
    met: bool
    detail: str = ""


@dataclass
class Readiness:
    """Every condition of one gate's approval."""

    gate: Gate
    required_roles: list[str]
    signatures: list[Signature]  # the current review round's, not invalidated
    invalidated: list[tuple[Signature, SignatureInvalidation]]  # newest first
    blocking_items: list[ChecklistItem]
    run: EvaluationRun | None  # the run the criteria are judged on
    verdicts: list[criteria.Verdict]
    preparers: set[int]  # who attached the gate's active evidence

    @property
    def approvals_by_role(self) -> dict[str, list[Signature]]:
        approvals: dict[str, list[Signature]] = {}
        for signature in self.signatures:
            if signature.meaning == SignatureMeaning.APPROVE:
                approvals.setdefault(signature.role, []).append(signature)
        return approvals

    @property
    def missing_roles(self) -> list[str]:
        approved = self.approvals_by_role
        return [role for role in self.required_roles if role not in approved]

    @property
    def invalidated_roles(self) -> set[str]:
        """Required roles still missing whose signature in this gate was invalidated."""
        missing = set(self.missing_roles)
        return {
            s.role
            for s, invalidation in self.invalidated
            if s.role in missing and invalidation.kind == SignatureInvalidation.Kind.INVALIDATED
        }

    @property
    def failing_criteria(self) -> list[criteria.Verdict]:
        """Required criteria that do not pass (fail or no data)."""
        return [v for v in self.verdicts if v.criterion.required and not v.passed]

    @property
    def separation_of_duties_met(self) -> bool:
        # The people who prepared the evidence cannot be the only ones approving it.
        approvers = {s.signer_id for group in self.approvals_by_role.values() for s in group}
        return not approvers or bool(approvers - self.preparers)

    @property
    def can_be_approved(self) -> bool:
        """Every item settled, every required criterion passing, every required role approved,
        and separation of duties held: what the last approval needs."""
        return (
            not self.missing_roles
            and not self.blocking_items
            and not self.failing_criteria
            and self.separation_of_duties_met
        )

    @property
    def conditions(self) -> list[Condition]:
        """Every condition, met or not, in the order a committee reads them."""
        found = [self._state_condition()]
        found += [
            Condition("item", item.title, item.get_status_display().lower(), False, item.key)
            for item in self.blocking_items
        ]
        found += [
            Condition(
                "criterion",
                v.criterion.expression,
                v.status,
                v.passed or not v.criterion.required,
                v.detail,
            )
            for v in self.verdicts
        ]
        approved = self.approvals_by_role
        invalidated = self.invalidated_roles
        for role in self.required_roles:
            if role in approved:
                state = "present"
            elif role in invalidated:
                state = "invalidated"
            else:
                state = "missing"
            found.append(Condition("signature", Role(role).label, state, role in approved))
        if not self.separation_of_duties_met:
            found.append(
                Condition(
                    "separation_of_duties",
                    "Separation of duties",
                    "not met",
                    False,
                    "only people who prepared the evidence have approved",
                )
            )
        return found

    def _state_condition(self) -> Condition:
        gate = self.gate
        state = gate.get_state_display().lower()
        if gate.state == GateState.LOCKED:
            previous = Phase(gate.phase).previous
            detail = f"the {previous.label} gate is not approved yet" if previous else ""
            return Condition("state", "Phase open", state, False, detail)
        if gate.state == GateState.OPEN:
            return Condition("state", "Submitted for review", "not submitted", False)
        if gate.state == GateState.CHANGES_REQUESTED:
            return Condition("state", "Submitted for review", state, False, gate.decision_note)
        return Condition("state", "Submitted for review", state, True)

    @property
    def blockers(self) -> list[str]:
        """What stands between the gate and its approval, one sentence each (empty when
        nothing does or the gate is approved)."""
        gate = self.gate
        if gate.state == GateState.APPROVED:
            return []
        state = self._state_condition()
        if gate.state == GateState.LOCKED:
            return [f"locked: {state.detail}" if state.detail else "locked"]
        found = []
        if gate.state == GateState.OPEN:
            found.append("not submitted for review")
        elif gate.state == GateState.CHANGES_REQUESTED:
            found.append(
                "changes requested" + (f": {gate.decision_note}" if gate.decision_note else "")
            )
        if self.blocking_items:
            found.append(f"{len(self.blocking_items)} required item(s) open")
        for verdict in self.failing_criteria:
            status = "fails" if verdict.status == "fail" else "has no data"
            found.append(f"criterion {status}: {verdict.criterion.expression}")
        if gate.state == GateState.IN_REVIEW:
            invalidated = self.invalidated_roles
            missing = [
                Role(r).label.lower() + (" (invalidated)" if r in invalidated else "")
                for r in self.missing_roles
            ]
            if missing:
                found.append("approval missing: " + ", ".join(missing))
            if not self.separation_of_duties_met:
                found.append("separation of duties: an approver who did not prepare evidence")
        return found


def gate_readiness(gates: Iterable[Gate]) -> dict[int, Readiness]:
    """Every condition of each gate, keyed by gate id, in at most eight queries whatever the
    number of gates. The gates are re-read, so stale instances give current answers."""
    ids = [gate.pk for gate in gates]
    if not ids:
        return {}
    latest = (
        EvaluationRun.objects.filter(gate=OuterRef("pk"), status=RunStatus.SUCCEEDED)
        .order_by(*LATEST_FIRST)
        .values("id")[:1]
    )
    fresh = list(
        Gate.objects.filter(pk__in=ids)
        .select_related("project")
        .annotate(latest_run_id=Subquery(latest))
    )
    projects = {gate.project for gate in fresh}
    required: dict[tuple[int, str, str], list[str]] = {}
    for policy, phase, tier, role in (
        SignOffRequirement.objects.filter(policy__in={p.signoff_policy_id for p in projects})
        .order_by("role")
        .values_list("policy", "phase", "risk_tier", "role")
    ):
        required.setdefault((policy, phase, tier), []).append(role)

    blocking: dict[int, list[ChecklistItem]] = {}
    for item in (
        ChecklistItem.objects.filter(gate__in=ids, required=True)
        .exclude(status__in=SETTLED_STATUSES)
        .order_by("position")
    ):
        blocking.setdefault(item.gate_id, []).append(item)

    standing: dict[int, list[Signature]] = {}
    invalidated: dict[int, list[tuple[Signature, SignatureInvalidation]]] = {}
    round_of = {gate.pk: gate.review_round for gate in fresh}
    for signature in (
        Signature.objects.filter(gate__in=ids)
        .select_related("signer", "invalidation")
        .order_by("-signed_at", "-id")
    ):
        invalidation = getattr(signature, "invalidation", None)
        if invalidation is not None:
            invalidated.setdefault(signature.gate_id, []).append((signature, invalidation))
        elif signature.review_round == round_of[signature.gate_id]:
            standing.setdefault(signature.gate_id, []).append(signature)

    # Separation of duties compares approvers with evidence preparers: only where someone
    # approved.
    approved = [
        gate_id
        for gate_id, signatures in standing.items()
        if any(s.meaning == SignatureMeaning.APPROVE for s in signatures)
    ]
    preparers: dict[int, set[int]] = {}
    if approved:
        for gate_id, user_id in Evidence.objects.filter(
            item__gate__in=approved, withdrawn_at__isnull=True
        ).values_list("item__gate", "added_by"):
            preparers.setdefault(gate_id, set()).add(user_id)

    criteria_of: dict[int, list[GateCriterion]] = {}
    for criterion in GateCriterion.objects.filter(gate__in=ids).order_by("id"):
        criteria_of.setdefault(criterion.gate_id, []).append(criterion)
    run_ids = [gate.latest_run_id for gate in fresh if gate.latest_run_id]
    runs = EvaluationRun.objects.select_related("model_version", "dataset_version").in_bulk(run_ids)
    results: dict[int, list[EvaluationResult]] = {}
    if criteria_of and run_ids:
        metrics = {c.metric for group in criteria_of.values() for c in group}
        for result in EvaluationResult.objects.filter(run__in=run_ids, metric__in=metrics):
            results.setdefault(result.run_id, []).append(result)

    answers = {}
    for gate in fresh:
        project = gate.project
        run = runs.get(gate.latest_run_id) if gate.latest_run_id else None
        answers[gate.pk] = Readiness(
            gate=gate,
            required_roles=required.get(
                (project.signoff_policy_id, gate.phase, project.risk_tier), []
            ),
            signatures=sorted(standing.get(gate.pk, []), key=lambda s: (s.signed_at, s.pk)),
            invalidated=invalidated.get(gate.pk, []),
            blocking_items=blocking.get(gate.pk, []),
            run=run,
            verdicts=criteria.verdicts(
                criteria_of.get(gate.pk, []), run, results.get(run.pk, []) if run else []
            ),
            preparers=preparers.get(gate.pk, set()),
        )
    return answers


def readiness_of(gate: Gate) -> Readiness:
    """`gate_readiness` for one gate."""
    return gate_readiness([gate])[gate.pk]


def run_verdicts(run: EvaluationRun) -> list[criteria.Verdict]:
    """The criteria of the run's gate judged on this run, whether or not it is the latest (the
    run page, and the event that attaches the run's results)."""
    gate_criteria = list(GateCriterion.objects.filter(gate=run.gate_id).order_by("id"))
    if run.status != RunStatus.SUCCEEDED:
        return criteria.verdicts(gate_criteria, None, [])
    return criteria.verdicts(gate_criteria, run, list(run.results.all()))
