"""Electronic sign-offs (21 CFR Part 11 style): policy, re-authentication, manifests,
immutability, invalidation, the signing rules, the gate decision and concurrency."""

import json
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audits.models import AuditEvent
from governance import services
from governance.models import Membership
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.gates import services as gate_services
from lifecycle.gates import signoffs
from lifecycle.gates.models import (
    Gate,
    ReauthFailure,
    Signature,
    SignatureInvalidation,
    SignOffPolicy,
)
from lifecycle.gates.readiness import readiness_of
from lifecycle.phases import Phase
from tests.factories import (
    PASSWORD,
    UserFactory,
    approve,
    make_project,
    make_team,
    pass_gate,
    project_creator,
    settle,
    sign,
)

pytestmark = pytest.mark.django_db


def gate_of(team, phase=Phase.PLANNING) -> Gate:
    return team.project.gates.get(phase=phase)


def in_review(team, phase=Phase.PLANNING) -> Gate:
    settle(team, phase)
    return gate_services.gate_submit(actor=team.creator, gate=gate_of(team, phase))


# --- Policy ------------------------------------------------------------------------------------


def test_the_default_policy_needs_more_approvers_for_higher_risk():
    def roles(tier, phase):
        team_project = make_project(risk_tier=tier)
        return readiness_of(team_project.gates.get(phase=phase)).required_roles

    assert roles("medium", "planning") == ["clinical_lead", "committee_chair", "privacy_officer"]
    assert roles("medium", "development") == [
        "clinical_lead",
        "clinical_safety_officer",
        "committee_chair",
    ]
    high = roles("high", "planning")
    assert "compliance_officer" in high and len(high) == 4
    assert len(roles("low", "planning")) < 3


def test_a_project_keeps_the_policy_it_was_reviewed_under(admin_user):
    old = make_project()
    v1 = SignOffPolicy.objects.get()
    v2 = gate_services.signoff_policy_create_version(actor=admin_user, source=v1, version="2")
    v2.requirements.filter(phase="planning", risk_tier="medium", role="privacy_officer").delete()
    gate_services.signoff_policy_activate(actor=admin_user, policy=v2)
    old.refresh_from_db()
    assert old.signoff_policy == v1
    assert "privacy_officer" in readiness_of(old.gates.get(phase="planning")).required_roles
    new = make_project()
    assert new.signoff_policy == v2
    assert "privacy_officer" not in readiness_of(new.gates.get(phase="planning")).required_roles


def test_a_policy_in_use_cannot_change(admin_user):
    make_project()
    requirement = SignOffPolicy.objects.get().requirements.first()
    with pytest.raises(ValidationError, match="create a new version"):
        gate_services.signoff_requirement_delete(actor=admin_user, requirement=requirement)


# --- Signing -----------------------------------------------------------------------------------


def test_a_signature_records_who_what_when_and_the_manifest(team):
    gate = in_review(team)
    chair = team[Role.COMMITTEE_CHAIR]
    before = timezone.now()
    signature = sign(team, gate, Role.COMMITTEE_CHAIR, "review")
    assert signature.signer == chair
    assert signature.signer_name == chair.get_full_name()
    assert (signature.role, signature.meaning) == ("committee_chair", "review")
    assert before <= signature.signed_at <= timezone.now()
    manifest = json.loads(signature.manifest)
    assert manifest["checklist_template"] == team.project.checklist_template.version
    assert manifest["gate"] == {"id": gate.pk, "phase": "planning", "review_round": 1, "cycle": 1}
    item = manifest["items"][0]
    assert set(item) == {"key", "title", "required", "status", "justification", "evidence"}
    assert item["evidence"] and "sha256" in item["evidence"][0]
    assert signature.manifest_sha256 == signoffs.sha256_text(signature.manifest)
    assert signoffs.verify(signature).valid
    text = signature.manifestation
    assert chair.get_full_name() in text and "(Committee chair)" in text and "Reviewed" in text
    assert signature.signed_at.strftime("%Y-%m-%d %H:%M:%S UTC") in text
    assert signature.manifest_sha256[:12] in text


def test_a_wrong_password_signs_nothing_and_leaves_a_failed_attempt(team):
    gate = in_review(team)
    with pytest.raises(gate_services.ReauthenticationFailed, match="wrong password"):
        gate_services.signoff_create(
            actor=team[Role.COMMITTEE_CHAIR],
            gate=gate,
            role=Role.COMMITTEE_CHAIR,
            meaning="approve",
            password="not my password",
        )
    assert not Signature.objects.exists()
    failure = ReauthFailure.objects.get()
    assert (failure.user, failure.gate, failure.reason) == (
        team[Role.COMMITTEE_CHAIR],
        gate,
        "wrong password",
    )
    event = AuditEvent.objects.filter(action="signature.reauth_failed").get()
    assert event.actor_user == team[Role.COMMITTEE_CHAIR]


def test_repeated_failures_lock_signing_for_a_cool_off_period(team, settings):
    # One lockout for login and signing (governance.lockout, tests/security/test_lockout.py).
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    gate = in_review(team)
    chair = team[Role.COMMITTEE_CHAIR]
    for _ in range(3):
        with pytest.raises(gate_services.ReauthenticationFailed):
            gate_services.signoff_create(
                actor=chair, gate=gate, role="committee_chair", meaning="review", password="x"
            )
    with pytest.raises(PermissionDenied, match="Signing is locked"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "review")  # even with the right password
    assert not Signature.objects.exists()
    past = timezone.now() - timedelta(seconds=settings.LOGIN_LOCKOUT_COOLOFF + 1)
    AccessAttempt.objects.update(attempt_time=past)
    assert sign(team, gate, Role.COMMITTEE_CHAIR, "review").pk


def test_a_totp_code_is_needed_when_a_device_is_enrolled(team):
    gate = in_review(team)
    chair = team[Role.COMMITTEE_CHAIR]
    device = TOTPDevice.objects.create(user=chair, name="phone", confirmed=True)
    with pytest.raises(gate_services.ReauthenticationFailed, match="TOTP code is required"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "review")
    with pytest.raises(gate_services.ReauthenticationFailed, match="wrong TOTP code"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "review", otp_token="000000")
    device.refresh_from_db()
    device.throttle_reset()  # django-otp slows down guesses after a failure; the clock moved on
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    assert sign(team, gate, Role.COMMITTEE_CHAIR, "review", otp_token=code).pk


def test_signing_refuses_to_run_inside_someone_elses_transaction(live_db):
    """Durability: the failed-attempt record is committed on its own, so no caller's rollback
    can take it back; the service refuses to be nested where that could happen."""
    live = make_team()
    gate = in_review(live)
    with pytest.raises(RuntimeError), transaction.atomic():
        sign(live, gate, Role.COMMITTEE_CHAIR, "review")
    with pytest.raises(gate_services.ReauthenticationFailed):
        gate_services.signoff_create(
            actor=live[Role.COMMITTEE_CHAIR],
            gate=gate,
            role="committee_chair",
            meaning="approve",
            password="wrong",
        )
    assert ReauthFailure.objects.filter(user=live[Role.COMMITTEE_CHAIR]).count() == 1
    assert not Signature.objects.exists()


def test_a_wrong_password_on_the_page_is_recorded_durably(client, live_db):
    team = make_team()
    gate = in_review(team)
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = client.post(
        f"/projects/{team.project.slug}/gates/planning/sign/",
        {"role": "committee_chair", "meaning": "approve", "password": "wrong"},
        follow=True,
    )
    assert "Re-authentication failed (wrong password): nothing was signed." in (
        response.content.decode()
    )
    assert ReauthFailure.objects.filter(gate=gate).count() == 1
    assert AuditEvent.objects.filter(action="signature.reauth_failed").count() == 1
    assert not Signature.objects.exists()


# --- Immutability ------------------------------------------------------------------------------


def test_the_database_refuses_to_update_or_delete_signatures(team):
    signature = sign(team, in_review(team), Role.COMMITTEE_CHAIR, "review")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Signature.objects.filter(pk=signature.pk).update(meaning="approve")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Signature.objects.filter(pk=signature.pk).delete()
    settle_change(team)
    invalidation = SignatureInvalidation.objects.get()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        SignatureInvalidation.objects.filter(pk=invalidation.pk).delete()
    assert Signature.objects.get(pk=signature.pk).meaning == "review"


def settle_change(team):
    item = team.project.checklist_items.filter(phase="planning").first()
    checklist_services.evidence_add_note(actor=team.creator, item=item, note="An addendum.")


def test_a_signature_moved_to_another_gate_with_sql_fails_verification(team):
    from audits.triggers import uninstall

    signature = sign(team, in_review(team), Role.COMMITTEE_CHAIR, "review")
    other = gate_of(team, Phase.DATA)
    uninstall(connection, "governance_signature")  # as a database administrator could
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_signature SET gate_id = %s WHERE id = %s", [other.pk, signature.pk]
        )
    verdict = signoffs.verify(Signature.objects.get(pk=signature.pk))
    assert not verdict.valid
    assert any("record was altered" in reason for reason in verdict.reasons)
    assert any("gate is now" in reason for reason in verdict.reasons)


def test_a_signature_whose_meaning_was_edited_with_sql_fails_verification(team):
    from audits.triggers import uninstall

    signature = sign(team, in_review(team), Role.COMMITTEE_CHAIR, "review")
    uninstall(connection, "governance_signature")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_signature SET meaning = 'approve' WHERE id = %s", [signature.pk]
        )
    assert not signoffs.verify(Signature.objects.get(pk=signature.pk)).valid


# --- Invalidation -------------------------------------------------------------------------------


def test_new_evidence_on_an_approved_gate_invalidates_and_reopens_it(team):
    pass_gate(team, Phase.PLANNING)
    approved = gate_of(team)
    assert approved.state == "approved"
    signed = list(Signature.objects.filter(gate=approved))
    item = team.project.checklist_items.filter(phase="planning").first()
    upload = SimpleUploadedFile("dpia-v2.pdf", b"the revised impact assessment")
    evidence = checklist_services.evidence_add_file(actor=team.creator, item=item, upload=upload)
    gate = gate_of(team)
    assert gate.state == "in_review" and gate.review_round == 2
    assert "Reopened" in gate.reopened_reason and "dpia-v2.pdf" in gate.reopened_reason
    assert team.project.__class__.objects.get(pk=team.project.pk).current_phase == "planning"
    event = AuditEvent.objects.filter(action="evidence.add", target_id=str(evidence.pk)).get()
    assert event.after["invalidated_signatures"] == [s.pk for s in signed]
    assert event.after["gate_reopened"] is True
    for signature in signed:
        invalidation = signature.invalidation
        assert invalidation.kind == "invalidated" and invalidation.cause_event == event
        verdict = signoffs.verify(signature)
        assert not verdict.valid and "evidence changed" in " ".join(verdict.reasons)
    # The committee signs the changed content afresh, in the new round.
    approve(team, gate)
    assert gate_of(team).state == "approved"


def test_a_changed_status_during_review_invalidates_current_signatures(team):
    gate = in_review(team)
    signature = sign(team, gate, Role.PRIVACY_OFFICER, "approve")
    item = team.project.checklist_items.filter(phase="planning").first()
    checklist_services.checklist_item_update(actor=team.creator, item=item, status="in_progress")
    assert signature.invalidation.cause.startswith(f"“{item.title}” changed to in progress")
    assert gate_of(team).review_round == 2


def test_an_evidence_file_changed_on_disk_fails_verification(team):
    item = team.project.checklist_items.filter(phase="planning").first()
    evidence = checklist_services.evidence_add_file(
        actor=team.creator, item=item, upload=SimpleUploadedFile("plan.txt", b"original plan")
    )
    signature = sign(team, in_review(team), Role.COMMITTEE_CHAIR, "review")
    with open(evidence.file.path, "wb") as handle:
        handle.write(b"quietly edited plan")
    verdict = signoffs.verify(signature)
    assert not verdict.valid
    assert any("plan.txt" in reason and "changed on disk" in reason for reason in verdict.reasons)


def test_resubmission_supersedes_the_previous_round(team):
    gate = in_review(team)
    review = sign(team, gate, Role.CLINICAL_LEAD, "approve")
    sign(team, gate, Role.COMMITTEE_CHAIR, "reject", "Missing the DPIA.")
    gate_services.gate_submit(actor=team.creator, gate=gate_of(team))
    assert review.invalidation.kind == "superseded"
    assert "review round 2 started" in review.invalidation.cause
    conditions = readiness_of(gate_of(team))
    assert "clinical_lead" in conditions.missing_roles  # earlier approvals no longer count


def test_the_page_shows_signatures_and_what_invalidated_them(client, team):
    pass_gate(team, Phase.PLANNING)
    settle_change(team)
    client.force_login(team[Role.AUDITOR])
    page = client.get(f"/projects/{team.project.slug}/phases/planning/").content.decode()
    assert "Reopened after approval." in page
    assert "Signatures that no longer count" in page
    signature = Signature.objects.first()
    assert signature.manifest_sha256[:12] in page
    assert "Invalidated (signed content changed)" in page
    assert "evidence “An addendum.” was attached" in page


# --- Rules ---------------------------------------------------------------------------------------


def test_one_decision_per_person_per_round_and_reviewed_never_uses_it_up(team):
    gate = in_review(team)
    sign(team, gate, Role.COMMITTEE_CHAIR, "review")
    with pytest.raises(ValidationError, match="already marked this gate reviewed"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "review")
    sign(team, gate, Role.COMMITTEE_CHAIR, "approve")
    with pytest.raises(ValidationError, match="already approved this gate in review round 1"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "reject", reason="Changed my mind.")
    with pytest.raises(ValidationError, match="one approval or rejection per person"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "review")
    chair = team[Role.COMMITTEE_CHAIR]
    meanings = sorted(gate.signatures.filter(signer=chair).values_list("meaning", flat=True))
    assert meanings == ["approve", "review"]


def test_nobody_signs_in_a_role_they_do_not_hold(team):
    gate = in_review(team)
    with pytest.raises(PermissionDenied, match="do not hold the role Committee chair"):
        gate_services.signoff_create(
            actor=team[Role.CLINICAL_LEAD],
            gate=gate,
            role=Role.COMMITTEE_CHAIR,
            meaning="approve",
            password=PASSWORD,
        )
    with pytest.raises(PermissionDenied):
        sign(team, gate, Role.AUDITOR, "review")  # auditors are read-only
    assert not Signature.objects.exists()


def test_the_project_lead_cannot_approve_their_own_project(team):
    gate = in_review(team)
    lead = team[Role.PROJECT_LEAD]
    Membership.objects.create(project=team.project, user=lead, role=Role.CLINICAL_LEAD)
    with pytest.raises(PermissionDenied, match="project lead cannot approve"):
        sign(team, gate, Role.PROJECT_LEAD, "approve")
    with pytest.raises(PermissionDenied, match="project lead cannot approve"):
        gate_services.signoff_create(
            actor=lead, gate=gate, role=Role.CLINICAL_LEAD, meaning="approve", password=PASSWORD
        )
    assert sign(team, gate, Role.PROJECT_LEAD, "review").pk  # reviewing is allowed


def test_on_high_risk_the_chair_must_hold_no_other_role():
    team = make_team(risk_tier="high")
    gate = in_review(team)
    chair = team[Role.COMMITTEE_CHAIR]
    services.membership_add(
        actor=team.creator, project=team.project, user=chair, role=Role.COMMITTEE_MEMBER
    )
    with pytest.raises(PermissionDenied, match="no other role"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "approve")
    assert sign(team, gate, Role.COMMITTEE_CHAIR, "reject", "Not independent yet.").pk


def test_approval_needs_settled_items_but_rejection_does_not(team):
    in_review(team)
    item = team.project.checklist_items.filter(phase="planning").first()
    checklist_services.checklist_item_update(actor=team.creator, item=item, status="in_progress")
    with pytest.raises(ValidationError, match="cannot be approved while 1 required item"):
        sign(team, gate_of(team), Role.COMMITTEE_CHAIR, "approve")
    sign(team, gate_of(team), Role.COMMITTEE_CHAIR, "reject", "Finish the checklist.")
    assert gate_of(team).state == "changes_requested"


def test_the_last_required_approval_approves_and_opens_the_next_phase(team):
    gate = in_review(team)
    required = readiness_of(gate).required_roles
    for role in required[:-1]:
        sign(team, gate, role)
        assert gate_of(team).state == "in_review"
    sign(team, gate, Role.COMMITTEE_MEMBER, "approve")  # not required: does not decide
    assert gate_of(team).state == "in_review"
    sign(team, gate, required[-1])
    assert gate_of(team).state == "approved"
    assert gate_of(team, Phase.DATA).state == "open"
    decisive = AuditEvent.objects.filter(action="signature.create").order_by("id").last()
    assert decisive.after["gate_state"] == "approved"


def test_approvers_who_prepared_the_evidence_cannot_approve_alone(team):
    gate_team = team
    for role in (Role.CLINICAL_LEAD, Role.PRIVACY_OFFICER, Role.COMMITTEE_CHAIR):
        Membership.objects.get_or_create(
            project=gate_team.project, user=gate_team[Role.CLINICAL_LEAD], role=role
        )
    # The clinical lead prepares one item's evidence, then tries to approve in every role.
    item = team.project.checklist_items.filter(phase="planning").first()
    checklist_services.evidence_add_note(actor=team[Role.CLINICAL_LEAD], item=item, note="Mine.")
    gate = in_review(team)
    # Everyone else who approves prepared evidence too: only the lead (creator) and them did.
    sign(team, gate, Role.CLINICAL_LEAD)
    conditions = readiness_of(gate_of(team))
    assert conditions.separation_of_duties_met is False
    assert gate_of(team).state == "in_review"


# --- State machine ---------------------------------------------------------------------------


@contextmanager
def rolled_back():
    """A savepoint that is always rolled back. Marked like Django's TestCase blocks so that
    the services' durable (outermost-only) transactions may run inside it in tests."""
    atomic = transaction.atomic()
    atomic._from_testcase = True
    with atomic:
        yield
        transaction.set_rollback(True)


ACTORS = [*Role, "outsider"]


def _allowed(state: str, action: str, actor: str) -> bool:
    if actor == "outsider":
        return False
    if action == "submit":
        return state in {"open", "changes_requested"} and actor == Role.PROJECT_LEAD
    if action == "approve":
        return state == "in_review" and actor not in {Role.AUDITOR, Role.PROJECT_LEAD}
    if action in {"reject", "review"}:
        return state == "in_review" and actor != Role.AUDITOR
    if action == "start_review":
        return state == "approved" and actor == Role.COMMITTEE_CHAIR
    raise AssertionError(action)


def _gate_in(state: str):
    team = make_team()
    if state == "locked":
        return team, gate_of(team, Phase.DATA)
    if state == "approved":
        for phase in Phase:
            pass_gate(team, phase)
        return team, gate_of(team, Phase.MONITORING)
    settle(team, Phase.PLANNING)
    if state in {"in_review", "changes_requested"}:
        gate_services.gate_submit(actor=team.creator, gate=gate_of(team))
    if state == "changes_requested":
        sign(team, gate_of(team), Role.COMMITTEE_CHAIR, "reject", "Again.")
    return team, gate_of(team)


def _act(team, gate, action, actor):
    user = team.outsider if actor == "outsider" else team[actor]
    if action == "submit":
        return gate_services.gate_submit(actor=user, gate=gate)
    if action == "start_review":
        return gate_services.gate_start_review_cycle(actor=user, gate=gate)
    role = actor if actor != "outsider" else Role.COMMITTEE_MEMBER
    return gate_services.signoff_create(
        actor=user,
        gate=gate,
        role=role,
        meaning=action,
        reason="Because." if action == "reject" else "",
        password=PASSWORD,
    )


@pytest.mark.parametrize("state", ["locked", "open", "in_review", "approved", "changes_requested"])
def test_the_gate_state_machine(state):
    team, gate = _gate_in(state)
    assert gate.state == state
    checked = 0
    for action in ("submit", "approve", "reject", "review", "start_review"):
        for actor in ACTORS:
            with rolled_back():
                allowed = _allowed(state, action, actor)
                signatures = Signature.objects.count()
                if allowed:
                    _act(team, gate, action, actor)
                else:
                    with pytest.raises((PermissionDenied, ValidationError)):
                        _act(team, gate, action, actor)
                    assert Gate.objects.get(pk=gate.pk).state == state, (action, actor)
                    assert Signature.objects.count() == signatures, (action, actor)
            checked += 1
    assert checked == 5 * len(ACTORS)


# --- Concurrency ---------------------------------------------------------------------------


def test_twenty_concurrent_signings_give_exactly_one_approval(postgres, live_db):
    """Ten members, each sending the same approval twice at once, on a gate that needs three
    roles: no one signs twice, nobody signs after the approval, one approval transition."""
    creator = project_creator()
    project = make_project(creator)
    team_roles = [Role.CLINICAL_LEAD] * 4 + [Role.PRIVACY_OFFICER] * 3 + [Role.COMMITTEE_CHAIR] * 3
    members = []
    for role in team_roles:
        user = UserFactory()
        services.membership_add(actor=creator, project=project, user=user, role=role)
        members.append((user, role))
    for item in project.checklist_items.filter(phase="planning"):
        checklist_services.evidence_add_note(actor=creator, item=item, note="Evidence.")
        checklist_services.checklist_item_update(actor=creator, item=item, status="done")
    gate = gate_services.gate_submit(actor=creator, gate=project.gates.get(phase="planning"))
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt(user, role):
        try:
            barrier.wait()
            gate_services.signoff_create(
                actor=user, gate=gate, role=role, meaning="approve", password=PASSWORD
            )
            outcomes.append("signed")
        except (ValidationError, PermissionDenied) as exc:
            outcomes.append(f"refused: {exc}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=attempt, args=member) for member in members for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 20
    gate.refresh_from_db()
    assert gate.state == "approved"
    signatures = list(Signature.objects.filter(gate=gate).order_by("signed_at"))
    assert outcomes.count("signed") == len(signatures)
    assert len({s.signer_id for s in signatures}) == len(signatures)  # nobody twice
    decisions = AuditEvent.objects.filter(action="signature.create")
    assert [e.after["gate_state"] for e in decisions].count("approved") == 1
    assert max(s.signed_at for s in signatures) <= gate.decided_at
    assert project.gates.get(phase="data").state == "open"
