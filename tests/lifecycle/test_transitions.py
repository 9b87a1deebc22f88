"""`gate_move`: the only code that changes a gate's state, and what follows from each move."""

import pytest

from lifecycle.gates.models import Gate, GateState
from lifecycle.gates.transitions import IllegalMove, Move, gate_move
from lifecycle.phases import Phase
from tests.factories import make_team

pytestmark = pytest.mark.django_db

ALLOWED = {
    Move.OPEN: {GateState.LOCKED},
    Move.SUBMIT: {GateState.OPEN, GateState.CHANGES_REQUESTED},
    Move.APPROVE: {GateState.IN_REVIEW},
    Move.REJECT: {GateState.IN_REVIEW},
    Move.CONTENT_CHANGED: {
        GateState.APPROVED,
        GateState.IN_REVIEW,
        GateState.CHANGES_REQUESTED,
        GateState.OPEN,
    },
    Move.START_CYCLE: {GateState.APPROVED},
    Move.HOLD: {GateState.OPEN},
    Move.MONITORING_REOPEN: {
        GateState.APPROVED,
        GateState.IN_REVIEW,
        GateState.CHANGES_REQUESTED,
        GateState.OPEN,
    },
}


def gate_in(team, state: str, phase: str = Phase.MONITORING) -> Gate:
    Gate.objects.filter(project=team.project, phase=phase).update(state=state)
    return Gate.objects.select_related("project").get(project=team.project, phase=phase)


@pytest.mark.parametrize("move", list(Move))
@pytest.mark.parametrize("state", list(GateState))
def test_a_move_is_allowed_exactly_from_its_states(move, state):
    team = make_team()
    gate = gate_in(team, state)
    if state in ALLOWED[move]:
        gate_move(gate, move, by=team.creator, note="why")
        assert Gate.objects.get(pk=gate.pk).state == gate.state
    else:
        with pytest.raises(IllegalMove):
            gate_move(gate, move, by=team.creator)
        assert Gate.objects.get(pk=gate.pk).state == state


def test_submit_starts_a_review_round_and_leaves_the_project_alone():
    team = make_team()
    gate = team.project.gates.get(phase=Phase.PLANNING)
    updated = team.project.updated_at
    gate_move(gate, Move.SUBMIT, by=team.creator, note="Ready")
    gate.refresh_from_db()
    assert (gate.state, gate.review_round, gate.decision_note) == ("in_review", 1, "Ready")
    assert gate.submitted_at is not None
    team.project.refresh_from_db()
    assert team.project.updated_at == updated


def test_approve_opens_the_next_phase_and_moves_the_project_on():
    team = make_team()
    gate = gate_in(team, GateState.IN_REVIEW, Phase.PLANNING)
    gate_move(gate, Move.APPROVE, by=team.creator)
    gate.refresh_from_db()
    assert gate.state == "approved" and gate.decided_by == team.creator
    following = team.project.gates.get(phase=Phase.DATA)
    assert following.state == "open" and following.opened_at == gate.decided_at
    team.project.refresh_from_db()
    assert team.project.current_phase == Phase.DATA


def test_reject_sends_it_back_with_the_reason_and_leaves_the_project_alone():
    team = make_team()
    gate = gate_in(team, GateState.IN_REVIEW, Phase.PLANNING)
    updated = Gate.objects.get(pk=gate.pk).project.updated_at
    gate_move(gate, Move.REJECT, by=team.creator, note="Add the risk register.")
    gate.refresh_from_db()
    assert (gate.state, gate.decision_note) == ("changes_requested", "Add the risk register.")
    team.project.refresh_from_db()
    assert team.project.updated_at == updated


def test_changed_content_reopens_an_approved_gate_and_says_why():
    team = make_team()
    gate = gate_in(team, GateState.IN_REVIEW, Phase.PLANNING)
    gate_move(gate, Move.APPROVE, by=team.creator)
    round_before = gate.review_round
    gate_move(gate, Move.CONTENT_CHANGED, note="Reopened: evidence withdrawn")
    gate.refresh_from_db()
    assert gate.state == "in_review" and gate.review_round == round_before + 1
    assert gate.reopened_reason == "Reopened: evidence withdrawn" and gate.reopened_at
    team.project.refresh_from_db()
    assert team.project.current_phase == Phase.PLANNING


def test_changed_content_of_a_gate_in_review_only_starts_a_new_round():
    team = make_team()
    gate = gate_in(team, GateState.IN_REVIEW, Phase.PLANNING)
    gate_move(gate, Move.CONTENT_CHANGED, note="ignored")
    gate.refresh_from_db()
    assert gate.state == "in_review" and gate.review_round == 1
    assert gate.reopened_reason == "" and gate.reopened_at is None


def test_only_the_monitoring_gate_recurs():
    team = make_team()
    gate = gate_in(team, GateState.APPROVED, Phase.DEPLOYMENT)
    with pytest.raises(IllegalMove):
        gate_move(gate, Move.START_CYCLE)
    monitoring = gate_in(team, GateState.APPROVED)
    gate_move(monitoring, Move.START_CYCLE)
    monitoring.refresh_from_db()
    assert (monitoring.state, monitoring.cycle) == ("open", 2)


@pytest.mark.parametrize(
    ("state", "after", "cycle", "review_round"),
    [
        (GateState.APPROVED, GateState.OPEN, 2, 0),
        (GateState.IN_REVIEW, GateState.IN_REVIEW, 1, 1),
        (GateState.OPEN, GateState.OPEN, 1, 0),
    ],
)
def test_monitoring_reopens_the_monitoring_gate_with_its_cause(state, after, cycle, review_round):
    team = make_team()
    gate = gate_move(gate_in(team, state), Move.MONITORING_REOPEN, note="batch 9 fails auroc")
    gate.refresh_from_db()
    assert (gate.state, gate.cycle, gate.review_round) == (after, cycle, review_round)
    assert gate.reopened_reason == "batch 9 fails auroc" and gate.reopened_at is not None
    with pytest.raises(IllegalMove):
        gate_move(gate_in(team, GateState.OPEN, Phase.PLANNING), Move.MONITORING_REOPEN)
