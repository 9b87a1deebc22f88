"""The dashboard's reads, in a fixed number of queries however many projects there are.

Each project row says where it stands (its current gate) and what blocks it: required items
not settled, approvals still missing, required criteria not passing. The user's own work is
listed first: gates waiting for their signature, items assigned to them.
"""

from dataclasses import dataclass, field

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery

from governance.models import (
    Membership,
    Project,
    Signature,
    SignatureMeaning,
    SignOffRequirement,
    User,
)
from governance.roles import Role
from governance.selectors import projects_for_user
from lifecycle import evaluations
from lifecycle.models import (
    SETTLED_STATUSES,
    ChecklistItem,
    EvaluationResult,
    EvaluationRun,
    Gate,
    GateCriterion,
    GateState,
    RunStatus,
)


@dataclass
class ProjectRow:
    project: Project
    gate: Gate | None
    blocking_items: int = 0
    missing_roles: list[str] = field(default_factory=list)
    failing_criteria: list[str] = field(default_factory=list)

    @property
    def blockers(self) -> list[str]:
        found = []
        if self.blocking_items:
            found.append(f"{self.blocking_items} required item(s) open")
        if self.missing_roles:
            found.append(
                "approval missing: " + ", ".join(Role(r).label.lower() for r in self.missing_roles)
            )
        found.extend(f"criterion fails: {c}" for c in self.failing_criteria)
        return found


def filtered_projects(user: User, params: dict) -> QuerySet[Project]:
    """The projects the user may see, narrowed by the dashboard's search and filters."""
    projects = projects_for_user(user).select_related("owner")
    if query := params.get("q", "").strip():
        projects = projects.filter(
            Q(name__icontains=query)
            | Q(slug__icontains=query)
            | Q(clinical_setting__icontains=query)
        )
    for field_name in ("current_phase", "risk_tier", "task_category"):
        if value := params.get(field_name):
            projects = projects.filter(**{field_name: value})
    if state := params.get("state"):
        projects = projects.filter(gates__phase=F("current_phase"), gates__state=state)
    return projects.order_by("name")


def requirements() -> dict[tuple, set[str]]:
    """Every sign-off requirement, by (policy, phase, risk tier): a small table, read once."""
    required: dict[tuple, set[str]] = {}
    for policy, phase, tier, role in SignOffRequirement.objects.values_list(
        "policy", "phase", "risk_tier", "role"
    ):
        required.setdefault((policy, phase, tier), set()).add(role)
    return required


def project_rows(projects: list[Project], required: dict[tuple, set[str]]) -> list[ProjectRow]:
    """Where each project stands and what blocks it (queries independent of their number)."""
    gates = {
        gate.project_id: gate
        for gate in Gate.objects.filter(
            project__in=[p.pk for p in projects], phase=F("project__current_phase")
        ).annotate(
            blocking=Count(
                "items",
                filter=Q(items__required=True) & ~Q(items__status__in=SETTLED_STATUSES),
            ),
            latest_run=Subquery(
                EvaluationRun.objects.filter(gate=OuterRef("pk"), status=RunStatus.SUCCEEDED)
                .order_by(*evaluations.LATEST_FIRST)
                .values("id")[:1]
            ),
        )
    }
    approved: dict[int, set[str]] = {}
    current = Q()
    for gate in gates.values():
        current |= Q(gate=gate.pk, review_round=gate.review_round)
    if gates:
        for gate_id, role in Signature.objects.filter(
            current, meaning=SignatureMeaning.APPROVE, invalidation__isnull=True
        ).values_list("gate", "role"):
            approved.setdefault(gate_id, set()).add(role)
    failing = _failing_criteria(list(gates.values()))
    rows = []
    for project in projects:
        gate = gates.get(project.pk)
        row = ProjectRow(project, gate)
        if gate is not None and gate.state != GateState.LOCKED:
            row.blocking_items = gate.blocking
            if gate.state == GateState.IN_REVIEW:
                needed = required.get(
                    (project.signoff_policy_id, gate.phase, project.risk_tier), set()
                )
                row.missing_roles = sorted(needed - approved.get(gate.pk, set()))
            row.failing_criteria = failing.get(gate.pk, [])
        rows.append(row)
    return rows


def _failing_criteria(gates: list[Gate]) -> dict[int, list[str]]:
    criteria = list(GateCriterion.objects.filter(gate__in=gates, required=True))
    if not criteria:
        return {}
    run_of = {gate.pk: gate.latest_run for gate in gates}
    results: dict[int, list[EvaluationResult]] = {}
    for result in EvaluationResult.objects.filter(
        run__in=[r for r in run_of.values() if r], metric__in={c.metric for c in criteria}
    ):
        results.setdefault(result.run_id, []).append(result)
    failing: dict[int, list[str]] = {}
    for criterion in criteria:
        run = run_of.get(criterion.gate_id)
        verdict = (
            evaluations.judge(criterion, results.get(run, []))
            if run
            else evaluations.Verdict(criterion, "no data", None, "no run")
        )
        if not verdict.passed:
            failing.setdefault(criterion.gate_id, []).append(criterion.expression)
    return failing


def pending_signoffs(user: User, required: dict[tuple, set[str]]) -> list[Gate]:
    """Gates in review that need an approval in a role the user holds and that the user has
    not signed in their current round."""
    memberships = list(Membership.objects.filter(user=user).values_list("project", "role"))
    held: dict[int, set[str]] = {}
    for project_id, role in memberships:
        held.setdefault(project_id, set()).add(role)
    gates = list(
        Gate.objects.filter(project__in=held, state=GateState.IN_REVIEW).select_related("project")
    )
    if not gates:
        return []
    signed = set(
        Signature.objects.filter(signer=user, gate__in=gates).values_list("gate", "review_round")
    )
    pending = []
    for gate in gates:
        needed = required.get(
            (gate.project.signoff_policy_id, gate.phase, gate.project.risk_tier), set()
        )
        if needed & held[gate.project_id] and (gate.pk, gate.review_round) not in signed:
            pending.append(gate)
    return pending


def assigned_items(user: User) -> QuerySet[ChecklistItem]:
    """Open checklist items assigned to the user, on projects they may still see."""
    return (
        ChecklistItem.objects.filter(assignee=user, project__in=projects_for_user(user))
        .exclude(status__in=SETTLED_STATUSES)
        .select_related("project")
        .order_by("project__name", "position")
    )
