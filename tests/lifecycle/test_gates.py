"""Gate sequencing: phases open in order, submission needs settled items, monitoring recurs."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from governance.models import Project
from governance.roles import Role
from lifecycle import services
from lifecycle.models import Gate, ItemStatus
from lifecycle.phases import Phase

pytestmark = pytest.mark.django_db


def settle(team, phase: Phase) -> None:
    for item in team.project.checklist_items.filter(phase=phase):
        if item.evidence_required:
            services.evidence_add_note(actor=team.creator, item=item, note="Evidence.")
        services.checklist_item_update(actor=team.creator, item=item, status=ItemStatus.DONE)


def gate(team, phase: Phase) -> Gate:
    return team.project.gates.get(phase=phase)


def pass_gate(team, phase: Phase) -> None:
    settle(team, phase)
    services.gate_submit(actor=team.creator, gate=gate(team, phase))
    services.gate_approve(actor=team[Role.COMMITTEE_CHAIR], gate=gate(team, phase))


def test_submission_lists_the_items_that_block_it(team):
    items = team.project.checklist_items.filter(phase=Phase.PLANNING)
    first = items.first()
    services.evidence_add_note(actor=team.creator, item=first, note="Scope statement v2")
    services.checklist_item_update(actor=team.creator, item=first, status=ItemStatus.DONE)
    with pytest.raises(ValidationError) as caught:
        services.gate_submit(actor=team.creator, gate=gate(team, Phase.PLANNING))
    message = caught.value.messages[0]
    assert "6 required item(s)" in message
    for item in items[1:]:
        assert item.title in message
    assert gate(team, Phase.PLANNING).state == "open"


def test_not_applicable_with_justification_counts_as_settled(team):
    for item in team.project.checklist_items.filter(phase=Phase.PLANNING):
        services.checklist_item_update(
            actor=team.creator,
            item=item,
            status=ItemStatus.NOT_APPLICABLE,
            justification="Covered by the enterprise programme.",
        )
    submitted = services.gate_submit(actor=team.creator, gate=gate(team, Phase.PLANNING))
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
        services.gate_submit(actor=team.creator, gate=gate(team, Phase.DATA))


def test_changes_requested_needs_a_reason_and_resubmission_starts_a_new_round(team):
    settle(team, Phase.PLANNING)
    planning = services.gate_submit(actor=team.creator, gate=gate(team, Phase.PLANNING))
    chair = team[Role.COMMITTEE_CHAIR]
    with pytest.raises(ValidationError) as caught:
        services.gate_request_changes(actor=chair, gate=planning, reason="")
    assert "reason" in caught.value.message_dict
    sent_back = services.gate_request_changes(
        actor=chair, gate=planning, reason="Add the bias mitigation plan."
    )
    assert (sent_back.state, sent_back.decision_note) == (
        "changes_requested",
        "Add the bias mitigation plan.",
    )
    with pytest.raises(ValidationError, match="cannot be approved"):
        services.gate_approve(actor=chair, gate=planning)
    again = services.gate_submit(actor=team.creator, gate=planning)
    assert (again.state, again.review_round) == ("in_review", 2)


def test_approval_rechecks_items_reopened_during_review(team):
    settle(team, Phase.PLANNING)
    planning = services.gate_submit(actor=team.creator, gate=gate(team, Phase.PLANNING))
    item = team.project.checklist_items.filter(phase=Phase.PLANNING).first()
    services.checklist_item_update(actor=team.creator, item=item, status=ItemStatus.IN_PROGRESS)
    with pytest.raises(ValidationError, match="1 required item"):
        services.gate_approve(actor=team[Role.COMMITTEE_CHAIR], gate=planning)


def test_only_the_project_lead_submits_and_only_the_chair_decides(team):
    settle(team, Phase.PLANNING)
    planning = gate(team, Phase.PLANNING)
    with pytest.raises(PermissionDenied):
        services.gate_submit(actor=team[Role.CLINICAL_LEAD], gate=planning)
    services.gate_submit(actor=team.creator, gate=planning)
    with pytest.raises(PermissionDenied):
        services.gate_approve(actor=team.creator, gate=planning)
    with pytest.raises(PermissionDenied):
        services.gate_approve(actor=team[Role.COMMITTEE_MEMBER], gate=planning)
    assert gate(team, Phase.PLANNING).state == "in_review"


def test_all_five_gates_pass_in_order_and_monitoring_recurs(team):
    for phase in Phase:
        pass_gate(team, phase)
    assert set(team.project.gates.values_list("state", flat=True)) == {"approved"}
    assert Project.objects.get(pk=team.project.pk).current_phase == Phase.MONITORING

    chair = team[Role.COMMITTEE_CHAIR]
    monitoring = services.gate_start_review_cycle(actor=chair, gate=gate(team, Phase.MONITORING))
    assert (monitoring.state, monitoring.cycle) == ("open", 2)
    statuses = set(
        team.project.checklist_items.filter(phase=Phase.MONITORING).values_list("status", flat=True)
    )
    assert statuses == {"in_progress"}  # each periodic review confirms its items afresh
    with pytest.raises(ValidationError, match="Only the monitoring gate recurs"):
        services.gate_start_review_cycle(actor=chair, gate=gate(team, Phase.PLANNING))
    pass_gate(team, Phase.MONITORING)
    assert gate(team, Phase.MONITORING).review_round == 2
