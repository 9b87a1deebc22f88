"""The dashboard's reads, in a fixed number of queries however many projects there are.

Each project row says where it stands (its current gate) and what blocks it, as
`lifecycle.gates.readiness` answers it for every page, and what monitoring found (open alerts,
an overdue periodic review: those projects come first). The user's own work is listed first:
gates waiting for their signature, items assigned to them.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet

from governance.models import Membership, Project, User
from governance.selectors import projects_for_user
from lifecycle.checklists.models import SETTLED_STATUSES, ChecklistItem
from lifecycle.gates.models import (
    Gate,
    GateState,
    Signature,
    SignatureMeaning,
    SignOffRequirement,
)
from lifecycle.gates.readiness import gate_readiness
from lifecycle.monitoring.selectors import MonitoringFlags, monitoring_flags, needs_attention


@dataclass
class ProjectRow:
    """One project on the dashboard: its current gate, what blocks it, who must act next,
    why it is back in review when an approval was reopened, and its monitoring flags."""

    project: Project
    gate: Gate | None
    blockers: list[str] = field(default_factory=list)
    next_action: str = ""
    reopened: str = ""
    monitoring: MonitoringFlags | None = None


def filtered_projects(user: User, params: dict[str, Any]) -> QuerySet[Project]:
    """The projects the user may see, narrowed by the dashboard's search and filters; those
    whose monitoring needs attention first, then by name."""
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
    return projects.annotate(needs_attention=needs_attention()).order_by("-needs_attention", "name")


def project_rows(projects: list[Project]) -> list[ProjectRow]:
    """Where each project stands, what blocks it and, for those `filtered_projects` put first,
    what monitoring found (queries independent of their number; none for monitoring when no
    project on the page needs attention)."""
    gates = {
        gate.project_id: gate
        for gate in Gate.objects.filter(
            project__in=[p.pk for p in projects], phase=F("project__current_phase")
        )
    }
    readiness = gate_readiness(gates.values())
    # The words behind the flag, for the projects the list put first (none: no query).
    attention = [p.pk for p in projects if getattr(p, "needs_attention", False)]
    flags = monitoring_flags(attention) if attention else {}
    rows = []
    for project in projects:
        gate = gates.get(project.pk)
        if gate is None:
            rows.append(ProjectRow(project, None, monitoring=flags.get(project.pk)))
            continue
        answer = readiness[gate.pk]
        current = answer.gate
        reopened = (
            current.reopened_reason
            if current.state == GateState.IN_REVIEW and current.reopened_reason
            else ""
        )
        rows.append(
            ProjectRow(
                project,
                current,
                answer.blockers,
                answer.next_action,
                reopened,
                monitoring=flags.get(project.pk),
            )
        )
    return rows


def pending_signoffs(user: User) -> list[Gate]:
    """Gates in review whose sign-off policy requires a role the user holds, on which the user
    has not yet approved or rejected in the current round ("reviewed" does not count: the
    approval is still theirs to give).

    One query however many projects the user has a role on: the roles they hold, the roles the
    policy requires and their signatures are subqueries, not ids read first and sent back as IN
    lists that grew with every project (`required_roles` of `gate_readiness`, in SQL)."""
    # The user's roles on the gate's project (two levels out: the requirement, then the gate).
    held = Membership.objects.filter(user=user, project=OuterRef(OuterRef("project"))).values(
        "role"
    )
    requires_a_held_role = SignOffRequirement.objects.filter(
        policy=OuterRef("project__signoff_policy"),
        phase=OuterRef("phase"),
        risk_tier=OuterRef("project__risk_tier"),
        role__in=held,
    )
    decided = Signature.objects.filter(
        gate=OuterRef("pk"),
        signer=user,
        review_round=OuterRef("review_round"),
        meaning__in=[SignatureMeaning.APPROVE, SignatureMeaning.REJECT],
    )
    return list(
        Gate.objects.filter(
            project__in=Membership.objects.filter(user=user).values("project"),
            state=GateState.IN_REVIEW,
        )
        .filter(Exists(requires_a_held_role))
        .exclude(Exists(decided))
        .select_related("project")
    )


def assigned_items(user: User) -> QuerySet[ChecklistItem]:
    """Open checklist items assigned to the user, on projects they may still see."""
    return (
        ChecklistItem.objects.restrict(user)
        .filter(assignee=user)
        .exclude(status__in=SETTLED_STATUSES)
        .select_related("project")
        .order_by("project__name", "position")
    )
