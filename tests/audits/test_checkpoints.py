"""Signed checkpoints outside the database, written by the command and the beat task."""

import io
import json
import threading

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from audits import checkpoints, verification
from audits.models import AuditChain, AuditEvent
from audits.tasks import write_audit_checkpoints
from audits.trail import record
from config.celery import app
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from tests.factories import make_team

pytestmark = pytest.mark.django_db


def comment(team, body="Reviewed."):
    checklist_services.comment_add(
        actor=team.creator, item=team.project.checklist_items.first(), body=body
    )


def test_checkpoints_are_signed_lines_appended_per_chain(team, settings):
    report = verification.write_checkpoints()
    assert report.ok and report.checkpointed == AuditChain.objects.count()
    path = checkpoints.path_for(f"project:{team.project.slug}")
    (line,) = path.read_text().splitlines()
    data = json.loads(line)
    chain = AuditChain.objects.get(project=team.project)
    assert (data["length"], data["head"]) == (chain.length, chain.head_hash)
    assert data["key_id"].startswith("hmac-sha256:") and len(data["signature"]) == 64
    assert verification.write_checkpoints().checkpointed == 0  # nothing new, nothing written
    comment(team)
    assert verification.write_checkpoints().checkpointed == 1
    assert len(path.read_text().splitlines()) == 2


def test_an_altered_checkpoint_file_is_reported(team):
    verification.write_checkpoints()
    path = checkpoints.path_for(f"project:{team.project.slug}")
    data = json.loads(path.read_text())
    data["length"] += 5
    path.write_text(json.dumps(data) + "\n")
    report = verification.verify()
    assert not report.ok
    assert "invalid signature" in str(report.problems[0])


def test_a_checkpoint_signed_with_another_key_is_reported(team, settings):
    verification.write_checkpoints()
    settings.AUDIT_CHECKPOINT_KEY = "another key"
    assert "invalid signature" in str(verification.verify().problems[0])


def test_a_chain_that_vanished_from_the_database_is_reported(team):
    checkpoints.append("project:ghost", 3, "a" * 64, checkpoints.now_iso())
    report = verification.verify()
    assert [str(p) for p in report.problems] == [
        "project:ghost: chain: has checkpoints but is missing from the database"
    ]


def test_a_failing_chain_gets_no_new_checkpoint(team):
    from tests.audits import tamper

    verification.write_checkpoints()
    comment(team)
    tamper.strip_protections()
    chain = AuditChain.objects.get(project=team.project)
    tamper.edit_payload(chain, chain.length)
    report = verification.write_checkpoints()
    assert not report.ok and report.checkpointed == 0
    path = checkpoints.path_for(chain.key)
    assert len(path.read_text().splitlines()) == 1


def test_the_checkpoint_command_fails_loudly_on_tampering(team):
    from tests.audits import tamper

    tamper.strip_protections()
    chain = AuditChain.objects.get(project=team.project)
    tamper.edit_payload(chain, 2)
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("audit_checkpoint", stdout=io.StringIO(), stderr=err)
    assert "TAMPERING DETECTED (no checkpoint written)" in err.getvalue()


def test_beat_schedules_the_checkpoint_task(settings):
    schedule = app.conf.beat_schedule["audit-checkpoints"]
    assert schedule["task"] == write_audit_checkpoints.name == "audits.write_checkpoints"
    assert schedule["schedule"] == settings.AUDIT_CHECKPOINT_INTERVAL


def test_the_checkpoint_task_runs_on_a_real_worker(celery_worker, live_db):
    team = make_team()
    comment(team)
    result = write_audit_checkpoints.delay().get(timeout=60)
    assert result["problems"] == []
    assert result["checkpointed"] == result["chains"] == AuditChain.objects.count()
    written = sorted(p.name for p in celery_worker.checkpoint_dir.glob("*.jsonl"))
    assert f"project__{team.project.slug}.checkpoints.jsonl" in written


def test_parallel_writers_on_postgresql_leave_valid_unforked_chains(postgres, live_db):
    """Eight threads, each with its own database connection, append to one project chain and
    the global chain at the same time."""
    team = make_team()
    item = team.project.checklist_items.first()
    start = AuditChain.objects.get(project=team.project).length
    writers, per_writer = 8, 25
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                checklist_services.comment_add(
                    actor=team[Role.COMMITTEE_MEMBER], item=item, body=f"{n}/{i}"
                )
                if i % 5 == 0:
                    with transaction.atomic():
                        record(actor=team.creator, action="auth.login", project=None)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    chain = AuditChain.objects.get(project=team.project)
    assert chain.length == start + writers * per_writer
    sequences = list(chain.events.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, chain.length + 1))
    assert chain.events.values("prev_hash").distinct().count() == chain.length  # no fork
    report = verification.verify()
    assert report.ok, report.problems
    assert AuditEvent.objects.filter(chain__key="global", action="auth.login").count() == (
        writers * 5
    )
