"""Gate sequencing: phases open in order, submission needs settled items, monitoring recurs."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from governance.models import Project
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ItemStatus
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate
from lifecycle.phases import Phase
from tests.factories import PASSWORD, pass_gate, settle, sign

pytestmark = pytest.mark.django_db


def gate(team, phase: Phase) -> Gate:
    return team.project.gates.get(phase=phase)


def test_submission_lists_the_items_that_block_it(team):
    items = team.project.checklist_items.filter(phase=Phase.PLANNING)
    first = items.first()
    checklist_services.evidence_add_note(actor=team.creator, item=first, note="Scope statement v2")
    checklist_services.checklist_item_update(actor=team.creator, item=first, status=ItemStatus.DONE)
    with pytest.raises(ValidationError) as caught:
        gate_services.gate_submit(actor=team.creator, gate=gate(team, Phase.PLANNING))
    message = caught.value.messages[0]
    assert "6 required item(s)" in message
    for item in items[1:]:
        assert item.title in message
    assert gate(team, Phase.PLANNING).state == "open"


def test_not_applicable_with_justification_counts_as_settled(team):
    for item in team.project.checklist_items.filter(phase=Phase.PLANNING):
        checklist_services.checklist_item_update(
            actor=team.creator,
            item=item,
            status=ItemStatus.NOT_APPLICABLE,
            justification="Covered by the enterprise programme.",
        )
    submitted = gate_services.gate_submit(actor=team.creator, gate=gate(team, Phase.PLANNING))
    assert (submitted.state, submitted.review_round) == ("in_review", 1)


def test_approval_opens_the_next_phase_only(team):
    pass_gate(team, Phase.PLANNING)
    states = dict(team.project.gates.values_list("phase", "state"))
    assert states == {
        "planning": "approved",
        "data": "open",
        "development": "locked",
        "deployment": "locked",
        "monitoring": "locked",
    }
    assert Project.objects.get(pk=team.project.pk).current_phase == Phase.DATA


def test_a_locked_gate_cannot_be_submitted(team):
    with pytest.raises(ValidationError, match="locked and cannot be submitted"):
        gate_services.gate_submit(actor=team.creator, gate=gate(team, Phase.DATA))


def test_a_rejection_needs_a_reason_and_resubmission_starts_a_new_round(team):
    settle(team, Phase.PLANNING)
    planning = gate_services.gate_submit(actor=team.creator, gate=gate(team, Phase.PLANNING))
    with pytest.raises(ValidationError) as caught:
        gate_services.signoff_create(
            actor=team[Role.COMMITTEE_CHAIR],
            gate=planning,
            role=Role.COMMITTEE_CHAIR,
            meaning="reject",
            password=PASSWORD,
        )
    assert "reason" in caught.value.message_dict
    sign(team, planning, Role.COMMITTEE_CHAIR, "reject", "Add the bias mitigation plan.")
    sent_back = gate(team, Phase.PLANNING)
    assert (sent_back.state, sent_back.decision_note) == (
        "changes_requested",
        "Add the bias mitigation plan.",
    )
    again = gate_services.gate_submit(actor=team.creator, gate=sent_back)
    assert (again.state, again.review_round) == ("in_review", 2)


def test_only_the_project_lead_submits(team):
    settle(team, Phase.PLANNING)
    planning = gate(team, Phase.PLANNING)
    with pytest.raises(PermissionDenied):
        gate_services.gate_submit(actor=team[Role.CLINICAL_LEAD], gate=planning)
    gate_services.gate_submit(actor=team.creator, gate=planning)
    assert gate(team, Phase.PLANNING).state == "in_review"


def test_all_five_gates_pass_in_order_and_monitoring_recurs(team):
    for phase in Phase:
        pass_gate(team, phase)
    assert set(team.project.gates.values_list("state", flat=True)) == {"approved"}
    assert Project.objects.get(pk=team.project.pk).current_phase == Phase.MONITORING

    chair = team[Role.COMMITTEE_CHAIR]
    monitoring = gate_services.gate_start_review_cycle(
        actor=chair, gate=gate(team, Phase.MONITORING)
    )
    assert (monitoring.state, monitoring.cycle) == ("open", 2)
    statuses = set(
        team.project.checklist_items.filter(phase=Phase.MONITORING).values_list("status", flat=True)
    )
    assert statuses == {"in_progress"}  # each periodic review confirms its items afresh
    with pytest.raises(ValidationError, match="Only the monitoring gate recurs"):
        gate_services.gate_start_review_cycle(actor=chair, gate=gate(team, Phase.PLANNING))
    pass_gate(team, Phase.MONITORING)
    assert gate(team, Phase.MONITORING).review_round == 2
