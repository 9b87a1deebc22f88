"""The trail in the database: append-only, same-transaction, readable and exportable."""

import io
import json

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audits import chain as hashchain
from audits.models import AuditChain, AuditEvent
from audits.selectors import audit_timeline
from audits.services import audit_export
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.gates import services as gate_services
from tests.factories import sign

pytestmark = pytest.mark.django_db


def an_event(team) -> AuditEvent:
    checklist_services.comment_add(
        actor=team.creator, item=team.project.checklist_items.first(), body="x"
    )
    return AuditEvent.objects.filter(chain__project=team.project).last()


def test_the_database_refuses_update(team):
    event = an_event(team)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="gate.approve")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE audits_auditevent SET payload = 'x'")
    assert AuditEvent.objects.get(pk=event.pk).action == "comment.add"


def test_the_database_refuses_delete(team):
    event = an_event(team)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audits_auditevent")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_postgresql_refuses_truncate(postgres, team):
    an_event(team)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for no deferred check
        cursor.execute("TRUNCATE audits_auditevent CASCADE")
    assert AuditEvent.objects.exists()


def test_each_project_has_its_own_chain_starting_at_genesis(team):
    chain = AuditChain.objects.get(project=team.project)
    first = chain.events.order_by("sequence").first()
    assert (first.sequence, first.prev_hash, first.action) == (
        1,
        hashchain.GENESIS_HASH,
        "project.create",
    )
    assert chain.key == f"project:{team.project.slug}"
    assert chain.length == chain.events.count()
    assert chain.head_hash == chain.events.order_by("-sequence").first().hash


def test_before_and_after_values_and_reason_are_recorded(team):
    for item in team.project.checklist_items.filter(phase="planning"):
        checklist_services.checklist_item_update(
            actor=team.creator, item=item, status="not_applicable", justification="Pilot only."
        )
    gate = gate_services.gate_submit(actor=team.creator, gate=team.project.gates.first())
    sign(team, gate, Role.COMMITTEE_CHAIR, "reject", "Justify each item properly.")
    event = AuditEvent.objects.filter(action="signature.create").get()
    assert event.before == {"gate_state": "in_review"}
    assert event.after["gate_state"] == "changes_requested"
    assert (event.after["role"], event.after["meaning"]) == ("committee_chair", "reject")
    assert event.reason == "Justify each item properly."
    submit = AuditEvent.objects.filter(action="gate.submit").get()
    assert submit.before == {"state": "open", "review_round": 0, "cycle": 1}
    assert submit.after == {
        "state": "in_review",
        "review_round": 1,
        "cycle": 1,
        "evidence_runs": [],
    }
    item_event = AuditEvent.objects.filter(action="checklist_item.update").first()
    assert item_event.before == {"status": "not_started", "justification": ""}
    assert item_event.after == {"status": "not_applicable", "justification": "Pilot only."}


def test_the_timeline_filters_in_the_database_and_respects_permissions(team):
    chair, member = team[Role.COMMITTEE_CHAIR], team[Role.COMMITTEE_MEMBER]
    item = team.project.checklist_items.first()
    checklist_services.comment_add(actor=member, item=item, body="First")
    checklist_services.comment_add(actor=chair, item=item, body="Second")
    auditor = team[Role.AUDITOR]
    timeline = audit_timeline(auditor, project=team.project)
    assert timeline.count() == AuditEvent.objects.filter(chain__project=team.project).count()
    assert list(timeline.values_list("sequence", flat=True)) == sorted(
        timeline.values_list("sequence", flat=True), reverse=True
    )
    by_chair = audit_timeline(auditor, project=team.project, actor=chair, action="comment.add")
    assert [e.after["body"] for e in by_chair] == ["Second"]
    on_item = audit_timeline(
        auditor, project=team.project, target_type="lifecycle.comment", target_id=None
    )
    assert on_item.count() == 2
    first = timeline.last().recorded_at
    assert audit_timeline(auditor, project=team.project, until=first).count() == 0
    assert audit_timeline(member, project=team.project).count() == 0  # no view_audit
    assert audit_timeline(team.outsider, project=team.project).count() == 0
    assert audit_timeline(auditor, project=None).count() == 0  # global chain: staff only


def test_the_export_verifies_offline_and_is_itself_recorded(team, tmp_path):
    an_event(team)
    out = io.StringIO()
    chain = audit_export(actor=team[Role.AUDITOR], project=team.project, out=out)
    lines = out.getvalue().splitlines()
    header = json.loads(lines[0])
    assert header["chain"] == chain.key and header["length"] == len(lines) - 1
    for line in lines[1:]:
        json.loads(line)  # every line is plain JSON for other tools
    _, result = hashchain.verify_export(lines)
    assert result.problem is None and result.length == header["length"]
    export_event = AuditEvent.objects.filter(chain=chain).last()
    assert export_event.action == "audit.export"
    assert export_event.actor_user == team[Role.AUDITOR]
    with pytest.raises(PermissionDenied):
        audit_export(actor=team[Role.COMMITTEE_MEMBER], project=team.project, out=io.StringIO())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lines: lines.pop(3), "jumps"),
        (lambda lines: lines.pop(), "header promises"),
        (
            lambda lines: lines.__setitem__(
                1, lines[1].replace("project.create", "project.update")
            ),
            "event #1 (id line 2): content does not match its hash",
        ),
        (
            lambda lines: lines.__setitem__(-1, lines[-1].replace('"body":"', '"body":"NOT ')),
            "content does not match its hash",
        ),
        (lambda lines: lines.__setitem__(2, "garbage"), "line 3: not an audit export event"),
        (lambda lines: lines.insert(3, lines[2]), "appears again"),
    ],
)
def test_a_tampered_export_file_is_refused(team, tmp_path, change, message):
    for _ in range(5):
        an_event(team)
    out = io.StringIO()
    audit_export(actor=team.creator, project=team.project, out=out)
    lines = out.getvalue().splitlines()
    change(lines)
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines) + "\n")
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("verify_audit", "--file", str(path), stderr=err)
    assert exited.value.code == 1
    assert "TAMPERING DETECTED" in err.getvalue() and message in err.getvalue()


def test_the_commands_export_verify_and_checkpoint(team, tmp_path, settings):
    an_event(team)
    path = tmp_path / "export.jsonl"
    call_command("export_audit", "--project", team.project.slug, "--output", str(path))
    out = io.StringIO()
    call_command("verify_audit", "--file", str(path), stdout=out)
    assert out.getvalue().startswith(f"OK: {path}: chain project:{team.project.slug}")
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert "new checkpoint(s)" in out.getvalue()
    out = io.StringIO()
    call_command("verify_audit", "--project", team.project.slug, stdout=out)
    assert "1 chain(s)" in out.getvalue() and "1 chain(s) matched" in out.getvalue()
    export = AuditEvent.objects.filter(action="audit.export").get()
    assert export.actor_type == "system" and export.actor_name == "manage.py export_audit"


def test_login_logout_and_failed_login_are_recorded_with_the_request(client, team):
    user = team[Role.CLINICAL_LEAD]
    headers = {"HTTP_USER_AGENT": "Firefox/140", "REMOTE_ADDR": "10.2.3.4"}
    client.post("/accounts/login/", {"username": user.username, "password": "nope"}, **headers)
    client.post(
        "/accounts/login/",
        {"username": user.username, "password": "correct horse battery staple"},
        **headers,
    )
    client.post("/accounts/logout/", **headers)
    events = list(AuditEvent.objects.filter(chain__key="global").order_by("sequence"))
    assert [e.action for e in events][-3:] == ["auth.login_failed", "auth.login", "auth.logout"]
    failed, login, logout = events[-3:]
    assert failed.actor_type == "anonymous" and failed.after == {"username": user.username}
    assert login.actor_user == user and logout.actor_user == user
    assert {e.ip_address for e in events[-3:]} == {"10.2.3.4"}
    assert {e.user_agent for e in events[-3:]} == {"Firefox/140"}
    assert len({e.request_id for e in events[-3:]}) == 3


def test_the_client_ip_comes_from_our_proxies_only(client, team, settings):
    user = team[Role.CLINICAL_LEAD]
    spoofed = {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 192.0.2.10", "REMOTE_ADDR": "10.0.0.2"}
    client.post("/accounts/login/", {"username": user.username, "password": "x"}, **spoofed)
    latest = AuditEvent.objects.order_by("id")
    assert latest.last().ip_address == "10.0.0.2"  # no trusted proxy: REMOTE_ADDR
    settings.TRUSTED_PROXY_COUNT = 1
    client.post("/accounts/login/", {"username": user.username, "password": "x"}, **spoofed)
    assert latest.last().ip_address == "192.0.2.10"  # what our own proxy saw


def test_evidence_downloads_are_recorded(client, team):
    from django.core.files.uploadedfile import SimpleUploadedFile

    item = team.project.checklist_items.first()
    evidence = checklist_services.evidence_add_file(
        actor=team.creator, item=item, upload=SimpleUploadedFile("a.txt", b"abc")
    )
    client.force_login(team[Role.AUDITOR])
    client.get(f"/evidence/{evidence.pk}/download/")
    event = AuditEvent.objects.filter(action="evidence.download").get()
    assert event.actor_user == team[Role.AUDITOR]
    assert event.after["sha256"] == evidence.sha256
    client.force_login(team.outsider)
    assert client.get(f"/evidence/{evidence.pk}/download/").status_code == 404
    assert AuditEvent.objects.filter(action="evidence.download").count() == 1


def test_the_admin_shows_events_only_to_those_who_may_read_them(client, team):
    auditor = team[Role.AUDITOR]
    for user in (auditor, team.outsider, team[Role.COMMITTEE_MEMBER]):
        user.is_staff = True
        user.save()
    event = AuditEvent.objects.filter(chain__project=team.project, action="project.create").get()
    client.force_login(auditor)
    listing = client.get("/admin/audits/auditevent/").content.decode()
    assert f"project:{team.project.slug}" in listing
    detail = client.get(f"/admin/audits/auditevent/{event.pk}/change/").content.decode()
    assert event.hash in detail and "checklist_items" in detail
    for outsider in (team.outsider, team[Role.COMMITTEE_MEMBER]):  # no view_audit permission
        client.force_login(outsider)
        assert (
            f"project:{team.project.slug}"
            not in client.get("/admin/audits/auditevent/").content.decode()
        )
        assert client.get(f"/admin/audits/auditevent/{event.pk}/change/").status_code == 302
