"""Checklist items: statuses, justification, assignment, evidence and comments."""

import hashlib

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction

from governance import services as governance_services
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ChecklistItem, Comment, Evidence, ItemStatus
from lifecycle.phases import Phase

pytestmark = pytest.mark.django_db


def planning_item(team, owner_role=Role.PRIVACY_OFFICER) -> ChecklistItem:
    return team.project.checklist_items.filter(phase=Phase.PLANNING, owner_role=owner_role).first()


def test_the_owner_role_moves_an_item_along(team):
    item = planning_item(team)
    officer = team[Role.PRIVACY_OFFICER]
    checklist_services.checklist_item_update(
        actor=officer, item=item, status=ItemStatus.IN_PROGRESS
    )
    checklist_services.evidence_add_note(
        actor=officer, item=item, note="DPIA approved on 2026-10-01."
    )
    item = checklist_services.checklist_item_update(
        actor=officer, item=item, status=ItemStatus.DONE
    )
    assert item.status == "done"
    assert item.updated_by == officer


def test_other_roles_cannot_edit_an_item_they_do_not_own(team):
    item = planning_item(team)
    for role in (Role.CLINICAL_LEAD, Role.COMMITTEE_CHAIR, Role.AUDITOR):
        with pytest.raises(PermissionDenied, match="owned by the Privacy officer"):
            checklist_services.checklist_item_update(
                actor=team[role], item=item, status=ItemStatus.IN_PROGRESS
            )
    assert ChecklistItem.objects.get(pk=item.pk).status == "not_started"


def test_an_assignee_with_checklist_rights_may_edit_the_item(team):
    item = planning_item(team)
    clinician = team[Role.CLINICAL_LEAD]
    checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=clinician)
    checklist_services.checklist_item_update(
        actor=clinician, item=item, status=ItemStatus.IN_PROGRESS
    )
    assert ChecklistItem.objects.get(pk=item.pk).assignee == clinician


def test_only_members_who_edit_checklists_can_be_assigned(team):
    item = planning_item(team)
    for user in (team[Role.AUDITOR], team[Role.COMMITTEE_MEMBER], team.outsider):
        with pytest.raises(ValidationError) as caught:
            checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=user)
        assert "assignee" in caught.value.message_dict
    assert ChecklistItem.objects.get(pk=item.pk).assignee is None


def test_not_applicable_needs_a_justification(team):
    item = planning_item(team)
    with pytest.raises(ValidationError) as caught:
        checklist_services.checklist_item_update(
            actor=team.creator, item=item, status=ItemStatus.NOT_APPLICABLE, justification="  "
        )
    assert "justification" in caught.value.message_dict
    assert ChecklistItem.objects.get(pk=item.pk).status == "not_started"
    item = checklist_services.checklist_item_update(
        actor=team.creator,
        item=item,
        status=ItemStatus.NOT_APPLICABLE,
        justification="No patient data leaves the hospital network.",
    )
    assert item.status == "not_applicable"


def test_the_database_refuses_an_unjustified_not_applicable(team):
    item = planning_item(team)
    with pytest.raises(IntegrityError), transaction.atomic():
        ChecklistItem.objects.filter(pk=item.pk).update(status="not_applicable", justification="")


def test_an_unknown_status_is_refused(team):
    item = planning_item(team)
    with pytest.raises(ValidationError) as caught:
        checklist_services.checklist_item_update(actor=team.creator, item=item, status="finished")
    assert "“finished” is not a status" in caught.value.message_dict["status"][0]


def test_done_needs_evidence_when_the_item_requires_it(team):
    item = team.project.checklist_items.filter(evidence_required=True).first()
    with pytest.raises(ValidationError, match="needs evidence"):
        checklist_services.checklist_item_update(
            actor=team.creator, item=item, status=ItemStatus.DONE
        )
    assert ChecklistItem.objects.get(pk=item.pk).status == "not_started"


def test_items_of_a_locked_phase_cannot_change(team):
    item = team.project.checklist_items.filter(phase=Phase.DEPLOYMENT).first()
    with pytest.raises(ValidationError, match="locked until the gate of phase 3"):
        checklist_services.checklist_item_update(
            actor=team.creator, item=item, status=ItemStatus.IN_PROGRESS
        )
    with pytest.raises(ValidationError, match="locked"):
        checklist_services.evidence_add_note(actor=team.creator, item=item, note="early")
    assert not Evidence.objects.exists()


def test_an_uploaded_file_is_stored_with_its_sha256_and_size(team):
    item = planning_item(team)
    content = b"Data protection impact assessment, version 3, signed.\n" * 100
    upload = SimpleUploadedFile("dpia.pdf", content, content_type="application/pdf")
    evidence = checklist_services.evidence_add_file(
        actor=team[Role.PRIVACY_OFFICER], item=item, upload=upload, title="DPIA"
    )
    evidence.refresh_from_db()
    assert evidence.sha256 == hashlib.sha256(content).hexdigest()
    assert evidence.size == len(content)
    assert evidence.original_name == "dpia.pdf"
    with evidence.file.open("rb") as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == evidence.sha256


def test_a_file_over_the_limit_is_refused_and_nothing_is_stored(team, settings):
    settings.EVIDENCE_MAX_BYTES = 1000
    upload = SimpleUploadedFile("big.csv", b"x" * 1001)
    with pytest.raises(ValidationError) as caught:
        checklist_services.evidence_add_file(
            actor=team.creator, item=planning_item(team), upload=upload
        )
    message = caught.value.message_dict["file"][0]
    assert "“big.csv” is 1,001 bytes" in message and "at most 1,000 bytes" in message
    assert not Evidence.objects.exists()
    media = settings.MEDIA_ROOT
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_an_empty_file_is_refused(team):
    with pytest.raises(ValidationError, match="is empty"):
        checklist_services.evidence_add_file(
            actor=team.creator,
            item=planning_item(team),
            upload=SimpleUploadedFile("empty.txt", b""),
        )


@pytest.mark.parametrize("url", ["javascript:alert(1)", "not a url", "ftp://files/x"])
def test_a_link_must_be_http(team, url):
    with pytest.raises(ValidationError) as caught:
        checklist_services.evidence_add_link(actor=team.creator, item=planning_item(team), url=url)
    assert "url" in caught.value.message_dict
    assert not Evidence.objects.exists()


def test_withdrawn_evidence_stays_in_the_history(team):
    item = planning_item(team)
    officer = team[Role.PRIVACY_OFFICER]
    first = checklist_services.evidence_add_note(actor=officer, item=item, note="Old DPIA")
    checklist_services.evidence_add_note(actor=officer, item=item, note="New DPIA")
    checklist_services.checklist_item_update(actor=officer, item=item, status=ItemStatus.DONE)
    withdrawn = checklist_services.evidence_withdraw(
        actor=officer, evidence=first, reason="Superseded"
    )
    assert withdrawn.withdrawn_by == officer
    assert item.evidence.count() == 2
    last = item.evidence.get(note="New DPIA")
    with pytest.raises(ValidationError, match="only evidence"):
        checklist_services.evidence_withdraw(actor=officer, evidence=last, reason="Oops")
    with pytest.raises(ValidationError, match="already withdrawn"):
        checklist_services.evidence_withdraw(actor=officer, evidence=first, reason="Again")


def test_comments_form_a_thread_and_empty_ones_are_refused(team):
    item = planning_item(team)
    checklist_services.comment_add(
        actor=team[Role.COMMITTEE_MEMBER], item=item, body="Which DPIA template?"
    )
    checklist_services.comment_add(
        actor=team[Role.PRIVACY_OFFICER], item=item, body="The 2026 one."
    )
    assert [c.body for c in item.comments.all()] == ["Which DPIA template?", "The 2026 one."]
    with pytest.raises(ValidationError):
        checklist_services.comment_add(actor=team.creator, item=item, body="   ")
    with pytest.raises(PermissionDenied):
        checklist_services.comment_add(actor=team[Role.AUDITOR], item=item, body="Read-only role")
    assert Comment.objects.count() == 2


def test_a_member_who_leaves_loses_access_and_their_assignments(team):
    clinician = team[Role.CLINICAL_LEAD]
    item = planning_item(team, Role.CLINICAL_LEAD)
    checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=clinician)
    membership = team.project.memberships.get(user=clinician)
    governance_services.membership_remove(actor=team.creator, membership=membership)
    assert not clinician.has_perm("governance.view_project", team.project)
    assert ChecklistItem.objects.get(pk=item.pk).assignee is None
