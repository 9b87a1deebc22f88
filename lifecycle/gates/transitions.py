"""The one place a gate changes state.

`gate_move` is a step of the gate services (submission, signing, signature invalidation,
periodic reviews), always run inside their transaction after they checked permission and
conditions; the services write the audit event. It knows which moves exist, which fields each
one sets, and what follows from it: approving opens the next phase (approving the monitoring
gate schedules the next periodic review), reopening an approved gate
locks the next phase again if its work has not been submitted, and any move keeps
`Project.current_phase` in step.
"""

import datetime
import enum

from django.utils import timezone

from governance.models import Project, User
from lifecycle.gates.models import Gate, GateState
from lifecycle.monitoring.models import MonitoringPlan
from lifecycle.phases import Phase


class Move(enum.Enum):
    """The moves a gate can make, each from the states it is allowed from."""

    OPEN = "open"  # locked -> open: the previous phase was approved
    SUBMIT = "submit"  # open or changes requested -> in review, a new review round
    APPROVE = "approve"  # in review -> approved: the last required approval
    REJECT = "reject"  # in review -> changes requested, with the rejection's reason
    # Signed content changed: a new review round; an approved gate goes back to in review.
    CONTENT_CHANGED = "content_changed"
    START_CYCLE = "start_cycle"  # approved monitoring gate -> open for its next periodic review
    HOLD = "hold"  # open -> locked: the previous gate was reopened (it opens again on approval)
    # Monitoring raised a cause (a serious incident, a required criterion failing on a batch):
    # an approved monitoring gate opens for a new periodic review; one in review starts a new
    # review round; an open one shows the cause.
    MONITORING_REOPEN = "monitoring_reopen"


_FROM: dict[Move, tuple[str, ...]] = {
    Move.OPEN: (GateState.LOCKED,),
    Move.SUBMIT: (GateState.OPEN, GateState.CHANGES_REQUESTED),
    Move.APPROVE: (GateState.IN_REVIEW,),
    Move.REJECT: (GateState.IN_REVIEW,),
    Move.CONTENT_CHANGED: (
        GateState.APPROVED,
        GateState.IN_REVIEW,
        GateState.CHANGES_REQUESTED,
        GateState.OPEN,
    ),
    Move.START_CYCLE: (GateState.APPROVED,),
    Move.HOLD: (GateState.OPEN,),
    Move.MONITORING_REOPEN: (
        GateState.APPROVED,
        GateState.IN_REVIEW,
        GateState.OPEN,
        GateState.CHANGES_REQUESTED,
    ),
}


class IllegalMove(Exception):
    """A move from a state it is not allowed from: a bug in the caller, never user input (the
    services check the state first and refuse with a message)."""


def lock_gate(gate: Gate) -> Gate:
    """The gate, re-read under a row lock, with its project."""
    return Gate.objects.select_for_update().select_related("project").get(pk=gate.pk)


def gate_move(
    gate: Gate,
    move: Move,
    *,
    by: User | None = None,
    note: str = "",
    now: datetime.datetime | None = None,
) -> Gate:
    """Move `gate` (locked by the caller) and save it; return it.

    `note` is the submission note (submit), the rejection's reason (reject) or the cause of a
    reopened approved gate (content changed); a gate that was not approved only starts a new
    review round.
    """
    if gate.state not in _FROM[move]:
        raise IllegalMove(f"cannot {move.value} a gate that is {gate.state}")
    now = now or timezone.now()
    was_approved = gate.state == GateState.APPROVED
    fields: list[str]
    if move is Move.OPEN:
        gate.state, gate.opened_at = GateState.OPEN, now
        fields = ["state", "opened_at"]
    elif move is Move.SUBMIT:
        gate.state, gate.submitted_at, gate.decision_note = GateState.IN_REVIEW, now, note
        gate.review_round += 1
        # A reopened approval is history once the gate is submitted, approved or reviewed
        # again: the banners that say why it is back in review stop (reopened_at stays).
        gate.reopened_reason = ""
        fields = ["state", "review_round", "submitted_at", "decision_note", "reopened_reason"]
    elif move in (Move.APPROVE, Move.REJECT):
        approved = move is Move.APPROVE
        gate.state = GateState.APPROVED if approved else GateState.CHANGES_REQUESTED
        gate.decided_at, gate.decided_by = now, by
        gate.decision_note = "" if approved else note
        fields = ["state", "decided_at", "decided_by", "decision_note"]
        if approved:
            gate.reopened_reason = ""
            fields.append("reopened_reason")
    elif move is Move.CONTENT_CHANGED:
        fields = ["review_round"]
        gate.review_round += 1
        if gate.state == GateState.APPROVED:
            gate.state, gate.reopened_at, gate.reopened_reason = GateState.IN_REVIEW, now, note
            fields += ["state", "reopened_at", "reopened_reason"]
    elif move is Move.HOLD:
        gate.state = GateState.LOCKED
        fields = ["state"]
    elif move is Move.MONITORING_REOPEN:
        if gate.phase != Phase.MONITORING:
            raise IllegalMove("only the monitoring gate is reopened by monitoring")
        gate.reopened_at, gate.reopened_reason = now, note
        fields = ["reopened_at", "reopened_reason"]
        if gate.state == GateState.APPROVED:
            gate.state, gate.opened_at = GateState.OPEN, now
            gate.cycle += 1
            fields += ["state", "opened_at", "cycle"]
        elif gate.state == GateState.IN_REVIEW:
            gate.review_round += 1
            fields.append("review_round")
    else:  # Move.START_CYCLE
        if gate.phase != Phase.MONITORING:
            raise IllegalMove("only the monitoring gate recurs")
        gate.state, gate.opened_at, gate.reopened_reason = GateState.OPEN, now, ""
        gate.cycle += 1
        fields = ["state", "cycle", "opened_at", "reopened_reason"]
    gate.save(update_fields=fields)
    if move is Move.APPROVE:
        _open_next_phase(gate, now, by)
        if gate.phase == Phase.MONITORING:
            _schedule_next_review(gate, now)
    if move is Move.CONTENT_CHANGED and was_approved:
        _hold_next_phase(gate, by)
    # The project's current phase moves only when a gate becomes or stops being approved.
    if move in (Move.APPROVE, Move.START_CYCLE) or (
        move in (Move.CONTENT_CHANGED, Move.MONITORING_REOPEN) and was_approved
    ):
        refresh_current_phase(gate.project_id)
    return gate


def _open_next_phase(gate: Gate, now: datetime.datetime, by: User | None) -> None:
    following = Phase(gate.phase).next
    if following is None:
        return
    locked = (
        Gate.objects.select_for_update()
        .filter(project=gate.project_id, phase=following, state=GateState.LOCKED)
        .first()
    )
    if locked is not None:
        gate_move(locked, Move.OPEN, by=by, now=now)


def _schedule_next_review(gate: Gate, now: datetime.datetime) -> None:
    # A periodic review approved: the next is due one review interval from now, and the
    # review is no longer overdue (docs/monitoring.md).
    plan = MonitoringPlan.objects.filter(project=gate.project_id).first()
    if plan is not None:
        plan.review_due_at = now + datetime.timedelta(days=plan.review_interval_days)
        plan.review_overdue_since = None
        plan.save(update_fields=["review_due_at", "review_overdue_since", "updated_at"])


def next_phase_to_hold(gate: Gate) -> Gate | None:
    """The next phase's gate that reopening `gate` would lock again: open, nothing submitted."""
    following = Phase(gate.phase).next
    if following is None:
        return None
    return Gate.objects.filter(
        project=gate.project_id, phase=following, state=GateState.OPEN
    ).first()


def _hold_next_phase(gate: Gate, by: User | None) -> None:
    # Work in the next phase stays; it is read-only until this gate is approved again. A next
    # gate already in review or decided is blocked by its readiness instead.
    held = next_phase_to_hold(gate)
    if held is not None:
        gate_move(lock_gate(held), Move.HOLD, by=by)


def refresh_current_phase(project_id: int) -> None:
    """Set the project's current phase to its earliest gate that is not approved."""
    first_open = (
        Gate.objects.filter(project=project_id)
        .exclude(state=GateState.APPROVED)
        .order_by("position")
        .values_list("phase", flat=True)
        .first()
    )
    Project.objects.filter(pk=project_id).update(
        current_phase=first_open or Phase.MONITORING, updated_at=timezone.now()
    )
