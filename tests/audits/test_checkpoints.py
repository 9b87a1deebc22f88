"""Signed checkpoints outside the database, written by the command and the beat task."""

import hashlib
import hmac
import io
import json
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import connection, transaction

from audits import checkpoint_format, checkpoints, verification
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
    assert data["key_id"].startswith("ed25519:") and len(data["signature"]) == 128
    # Each checkpoint is recorded in the global chain, so verification knows it must exist.
    recorded = AuditEvent.objects.get(
        chain__key="global", action="audit.checkpoint", target_id=str(chain.pk)
    )
    assert recorded.after == {**data, "file": path.name}
    # Nothing new (the global chain grew only by those records): nothing written.
    assert verification.write_checkpoints().checkpointed == 0
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
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = checkpoint_format.encode_private(
        Ed25519PrivateKey.generate()
    )
    problem = str(verification.verify().problems[0])
    assert "invalid signature" in problem and "not a trusted public key" in problem


def legacy_line(chain: AuditChain, key: str) -> str:
    """A checkpoint line exactly as releases before Ed25519 wrote it (HMAC-SHA256)."""
    fields = {
        "chain": chain.key,
        "length": chain.length,
        "head": chain.head_hash,
        "time": checkpoints.now_iso(),
        "key_id": checkpoint_format.hmac_key_id(key.encode()),
    }
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    signature = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    return json.dumps({**fields, "signature": signature}, sort_keys=True) + "\n"


def test_legacy_hmac_checkpoints_still_verify_and_new_ones_are_ed25519(team, settings):
    chain = AuditChain.objects.get(project=team.project)
    path = checkpoints.path_for(chain.key)
    path.parent.mkdir(parents=True)
    path.write_text(legacy_line(chain, settings.AUDIT_CHECKPOINT_KEY))
    report = verification.verify()
    assert report.ok, report.problems
    assert report.checkpointed == 1
    # The first run after the upgrade re-anchors it with Ed25519, recorded in the global chain,
    # though the chain did not grow.
    assert verification.write_checkpoints().ok
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["key_id"].startswith("hmac-sha256:")
    assert second["key_id"].startswith("ed25519:")
    assert (second["length"], second["head"]) == (first["length"], first["head"])
    assert verification.verify().ok
    assert verification.write_checkpoints().checkpointed == 0


def test_a_legacy_line_after_an_ed25519_line_is_refused(team, settings):
    verification.write_checkpoints()
    chain = AuditChain.objects.get(project=team.project)
    path = checkpoints.path_for(chain.key)
    with path.open("a") as handle:
        handle.write(legacy_line(chain, settings.AUDIT_CHECKPOINT_KEY))
    (problem,) = verification.verify().problems
    assert "line 2 is signed with the legacy HMAC key after lines signed with Ed25519" in str(
        problem
    )


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
