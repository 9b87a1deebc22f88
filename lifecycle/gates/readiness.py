"""What a gate still needs: the one answer every page, the API, the sign-off service and the
signature manifest use.

`gate_readiness` takes any set of gates and answers, for each, every condition of its approval
with its state: the gate's own state and the earlier gates', each required checklist item, each
criterion judged on the gate's evidence, each role the sign-off policy requires (present,
missing, or invalidated), and separation of duties; and who must act next. It reads in a fixed
number of queries however many gates it is given, so the dashboard asks once for a whole page
of projects.

The evidence: a gate in review or approved is judged on the runs its project lead designated
at submission (`Gate.evidence_runs`), so a later upload never changes its verdict; before
submission it is previewed on its latest succeeded run that is not a declared subset, the run
a submission designates by default.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from django.db.models import Max, OuterRef, Q, Subquery

from governance.roles import Role
from lifecycle.checklists.models import SETTLED_STATUSES, ChecklistItem, Evidence
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun, ResultScope, RunStatus
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
from lifecycle.metrics.registry import FAIRNESS_METRICS
from lifecycle.monitoring.models import OPEN_INCIDENT_STATUSES, SERIOUS_SEVERITIES, Incident
from lifecycle.phases import Phase

ConditionKind = Literal[
    "state", "item", "criterion", "incident", "signature", "separation_of_duties"
]

# Gates judged on their designated evidence; the others are previewed on their latest run.
JUDGED_ON_DESIGNATION = (GateState.IN_REVIEW, GateState.APPROVED)


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
    runs: list[EvaluationRun]  # the runs the criteria are judged on
    designated: bool  # the runs are the designated evidence (else: a preview)
    newer_run: EvaluationRun | None  # a succeeded run newer than the designated evidence
    verdicts: list[criteria.Verdict]
    preparers: set[int]  # who attached the gate's active evidence
    # Earlier gates of the project that are not approved while this one is past locked: an
    # approved gate was reopened. (phase label, why)
    earlier_not_approved: list[tuple[str, str]]
    # The monitoring gate's open serious or critical incidents (number, title): monitoring
    # reopened the gate for them, and it is not approved again while they are open.
    open_serious_incidents: list[tuple[int, str]] = field(default_factory=list)

    @property
    def run(self) -> EvaluationRun | None:
        """The run the criteria are judged on, when there is one (the newest of several)."""
        return self.runs[-1] if self.runs else None

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
            and not self.earlier_not_approved
            and not self.open_serious_incidents
        )

    @property
    def conditions(self) -> list[Condition]:
        """Every condition, met or not, in the order a committee reads them."""
        found = [self._state_condition()]
        found += [
            Condition("state", f"{phase} gate approved", "reopened", False, why)
            for phase, why in self.earlier_not_approved
        ]
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
        found += [
            Condition("incident", f"Serious incident {number} resolved", "open", False, title)
            for number, title in self.open_serious_incidents
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
        found = [
            f"the earlier {phase} gate is no longer approved: {why}"
            for phase, why in self.earlier_not_approved
        ]
        if gate.state == GateState.OPEN:
            found.append("not submitted for review")
        elif gate.state == GateState.CHANGES_REQUESTED:
            found.append(
                "changes requested" + (f": {gate.decision_note}" if gate.decision_note else "")
            )
        if self.blocking_items:
            found.append(f"{len(self.blocking_items)} required item(s) open")
        for verdict in self.failing_criteria:
            status = {"fail": "fails", "no data": "has no data"}.get(
                verdict.status, f"has {verdict.status}"
            )
            found.append(f"criterion {status}: {verdict.criterion.expression}")
        for number, title in self.open_serious_incidents:
            found.append(f"serious incident {number} open: {title}")
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

    @property
    def next_action(self) -> str:
        """Who must act next, and on what, in one line: "waiting for: privacy officer's
        approval; 2 required items open". Empty when the gate is approved."""
        gate = self.gate
        if gate.state == GateState.APPROVED:
            return ""
        if gate.state == GateState.LOCKED and not self.earlier_not_approved:
            previous = Phase(gate.phase).previous
            return f"waiting for: approval of the {previous.label} gate" if previous else ""
        if self.earlier_not_approved:
            phase, _ = self.earlier_not_approved[0]
            return f"waiting for: the {phase} gate to be approved again (it was reopened)"
        open_items = len(self.blocking_items)
        failing = len(self.failing_criteria)
        work = []
        if open_items:
            work.append(f"{open_items} required item{'s' if open_items > 1 else ''} open")
        if failing:
            work.append(f"{failing} required criteri{'a' if failing > 1 else 'on'} not passing")
        if self.open_serious_incidents:
            work.append(f"{len(self.open_serious_incidents)} serious incident(s) open")
        if gate.state == GateState.OPEN:
            who = "project lead to settle the items" if open_items else "project lead to submit"
        elif gate.state == GateState.CHANGES_REQUESTED:
            who = "project lead to address the requested changes and resubmit"
        else:
            missing = [Role(r).label.lower() + "'s" for r in self.missing_roles]
            if missing:
                who = (
                    ", ".join(missing[:-1]) + " and " + missing[-1]
                    if len(missing) > 1
                    else missing[0]
                ) + " approval"
            elif not self.separation_of_duties_met:
                who = "an approval from someone who prepared none of the evidence"
            else:
                who = "project lead to settle what blocks approval"
        return "waiting for: " + "; ".join([who, *work])


def gate_readiness(gates: Iterable[Gate]) -> dict[int, Readiness]:
    """Every condition of each gate, keyed by gate id, in a fixed number of queries whatever
    the number of gates (nine, one of them for the open serious incidents that hold a
    monitoring gate; ten when a fairness criterion asks for a minimum per subgroup). The gates
    are re-read, so stale instances give current answers."""
    ids = [gate.pk for gate in gates]
    if not ids:
        return {}
    succeeded = EvaluationRun.objects.filter(
        gate=OuterRef("pk"), status=RunStatus.SUCCEEDED
    ).order_by(*LATEST_FIRST)
    # The first earlier gate that is not approved although this one is past locked: an
    # approval was reopened.
    not_approved_before = (
        Gate.objects.filter(project=OuterRef("project"), position__lt=OuterRef("position"))
        .exclude(state=GateState.APPROVED)
        .order_by("position")
    )
    fresh = list(
        Gate.objects.filter(pk__in=ids)
        .select_related("project")
        .annotate(
            preview_run_id=Subquery(succeeded.filter(subset_reason="").values("id")[:1]),
            newest_run_id=Subquery(succeeded.values("id")[:1]),
            earlier_phase=Subquery(not_approved_before.values("phase")[:1]),
            earlier_state=Subquery(not_approved_before.values("state")[:1]),
            earlier_reason=Subquery(not_approved_before.values("reopened_reason")[:1]),
        )
    )
    projects = {gate.project for gate in fresh}
    # Every run a gate is judged on or shown beside, with the gate it is designated for: one
    # query for the previews, the newest runs and the designations.
    through = Gate.evidence_runs.through.objects
    shown = {g.preview_run_id for g in fresh} | {g.newest_run_id for g in fresh}
    any_designated = any(g.state in JUDGED_ON_DESIGNATION for g in fresh)
    runs: dict[int, EvaluationRun] = {
        run.pk: run
        for run in (
            EvaluationRun.objects.filter(
                Q(pk__in=shown - {None})
                | Q(pk__in=through.filter(gate__in=ids).values("evaluationrun_id"))
            )
            .select_related("project", "model_version", "dataset_version")
            .annotate(
                designated_for=Subquery(
                    through.filter(evaluationrun_id=OuterRef("pk")).values("gate_id")[:1]
                )
            )
            .order_by("id")
            if shown - {None} or any_designated
            else []
        )
    }
    designated: dict[int, list[int]] = {}
    for run in runs.values():
        designated_for = getattr(run, "designated_for", None)  # the annotation above
        if designated_for is not None:
            designated.setdefault(designated_for, []).append(run.pk)
    judged_on: dict[int, list[int]] = {}
    for gate in fresh:
        if gate.state in JUDGED_ON_DESIGNATION:
            judged_on[gate.pk] = designated.get(gate.pk, [])
        else:
            judged_on[gate.pk] = [gate.preview_run_id] if gate.preview_run_id else []
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
    results: dict[int, list[EvaluationResult]] = {}
    group_sizes: dict[tuple[int, str, str], int] = {}
    judged_ids = {run_id for group in judged_on.values() for run_id in group}
    if criteria_of and judged_ids:
        every = [c for group in criteria_of.values() for c in group]
        metrics = {c.metric for c in every}
        for result in EvaluationResult.objects.filter(run__in=judged_ids, metric__in=metrics):
            results.setdefault(result.run_id, []).append(result)
        # A fairness criterion's minimum per subgroup needs the subgroups' sizes.
        if any(c.min_group_records and c.metric in FAIRNESS_METRICS for c in every):
            for run_id, attribute, value, n in (
                EvaluationResult.objects.filter(run__in=judged_ids, scope=ResultScope.GROUP)
                .values("run", "group_attribute", "group_value")
                .annotate(n=Max("n"))
                .values_list("run", "group_attribute", "group_value", "n")
            ):
                group_sizes[(run_id, attribute, value)] = n or 0

    # Open serious incidents hold the monitoring gate: one query, only when one is asked about.
    serious: dict[int, list[tuple[int, str]]] = {}
    monitored = {g.project_id for g in fresh if g.phase == Phase.MONITORING}
    if monitored:
        for project_id, number, title in (
            Incident.objects.filter(
                project__in=monitored,
                severity__in=SERIOUS_SEVERITIES,
                status__in=OPEN_INCIDENT_STATUSES,
            )
            .order_by("number")
            .values_list("project_id", "number", "title")
        ):
            serious.setdefault(project_id, []).append((number, title))
    answers = {}
    for gate in fresh:
        project = gate.project
        gate_runs = [runs[i] for i in judged_on[gate.pk] if i in runs]
        newest = runs.get(gate.newest_run_id) if gate.newest_run_id else None
        designated_here = gate.state in JUDGED_ON_DESIGNATION
        earlier: list[tuple[str, str]] = []
        # A locked gate names an earlier gate only when that one was reopened: then it says why
        # it is locked again.
        reopened_before = gate.state != GateState.LOCKED or bool(gate.earlier_reason)
        if reopened_before and gate.earlier_phase:
            why = gate.earlier_reason or f"it is {GateState(gate.earlier_state).label.lower()}"
            earlier = [(Phase(gate.earlier_phase).label, why)]
        answers[gate.pk] = Readiness(
            gate=gate,
            required_roles=required.get(
                (project.signoff_policy_id, gate.phase, project.risk_tier), []
            ),
            signatures=sorted(standing.get(gate.pk, []), key=lambda s: (s.signed_at, s.pk)),
            invalidated=invalidated.get(gate.pk, []),
            blocking_items=blocking.get(gate.pk, []),
            runs=gate_runs,
            designated=designated_here,
            newer_run=newest
            if designated_here and newest is not None and newest not in gate_runs
            else None,
            verdicts=criteria.verdicts(
                criteria_of.get(gate.pk, []),
                gate_runs,
                [r for run in gate_runs for r in results.get(run.pk, [])],
                group_sizes,
                no_run="no evaluation run was designated as the gate's evidence"
                if designated_here
                else "no succeeded evaluation run",
            ),
            preparers=preparers.get(gate.pk, set()),
            earlier_not_approved=earlier,
            open_serious_incidents=serious.get(gate.project_id, [])
            if gate.phase == Phase.MONITORING
            else [],
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
        return criteria.verdicts(gate_criteria, [], [])
    results = list(run.results.all())
    sizes: dict[tuple[int, str, str], int] = {}
    for r in results:
        if r.scope == ResultScope.GROUP:
            key = (run.pk, r.group_attribute, r.group_value)
            sizes[key] = max(sizes.get(key, 0), r.n or 0)
    return criteria.verdicts(gate_criteria, [run], results, sizes)
