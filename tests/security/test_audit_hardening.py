"""The audit trail's outer defences (issue 11, items 6, 7, 8 and the offline part of 15).

6. Every checkpoint is recorded in the global chain, so deleting the checkpoint files (all, or
   one chain's) after rewriting a chain no longer goes unnoticed.
7. Checkpoints are signed with Ed25519 and verified with the public key only; every line of a
   checkpoint file is checked against the chain, so a forged line appended after a re-seal
   fails; production refuses to start without a signing key (`check --deploy`).
8. `verify_audit` checks that the append-only triggers are installed (and unaltered).
15. `python -m audits.verify_export` verifies an export with no settings, database or secret.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from audits import checkpoint_format, checkpoints, triggers, verification
from audits.models import AuditChain
from audits.services import audit_export
from audits.trail import record
from lifecycle.checklists import services as checklist_services
from tests.audits import tamper

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def comment(team, body="Reviewed."):
    checklist_services.comment_add(
        actor=team.creator, item=team.project.checklist_items.first(), body=body
    )


def verify_audit(*args) -> tuple[int, str, str]:
    """Run `manage.py verify_audit` in-process: exit status, standard output, standard error."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except SystemExit as exited:
        return int(exited.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def rewrite_quietly(chain: AuditChain, k: int) -> None:
    """Rewrite and re-seal the chain from event k, then put the triggers back, as a careful
    administrator would: only the checkpoints can tell."""
    tamper.strip_protections()
    tamper.rewrite_from(chain, k)
    triggers.install(connection, tamper.TABLE)


@pytest.fixture
def project_chain(team) -> AuditChain:
    for n in range(4):
        comment(team, f"note {n}")
    assert verification.write_checkpoints().ok
    comment(team, "after the first checkpoint")
    assert verification.write_checkpoints().ok
    return AuditChain.objects.get(project=team.project)


# --- 6. Checkpoints recorded in the global chain -------------------------------------------------


def test_it_names_the_missing_checkpoint_when_the_directory_is_deleted_after_a_rewrite(
    project_chain, settings
):
    first = checkpoints.read(checkpoints.path_for(project_chain.key))[0]
    rewrite_quietly(project_chain, 3)
    shutil.rmtree(settings.AUDIT_CHECKPOINT_DIR)
    status, _, err = verify_audit()
    assert status == 1
    expected = checkpoints.path_for(project_chain.key)
    assert (
        f"TAMPERING DETECTED: {project_chain.key}: chain: the checkpoint of {first.time} "
        f"({first.length} events, head {first.head[:12]}…, key {first.key_id}), recorded in the "
        "global chain at event #"
    ) in err
    assert (
        f"is missing: no checkpoint directory at {settings.AUDIT_CHECKPOINT_DIR} on this host: "
        "mount the checkpoint volume here, or the files were deleted"
    ) in err
    assert "TAMPERING DETECTED: global: chain: the checkpoint of " in err  # its file went too
    assert str(expected) not in err


def test_a_host_without_the_checkpoint_volume_is_told_to_mount_it(
    project_chain, settings, tmp_path
):
    """The worker writes the checkpoints; a web container that does not mount the same volume
    sees the events that record them but no directory."""
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "not-mounted"
    status, _, err = verify_audit()
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 2  # the global chain and the project's
    for line in lines:
        assert line.endswith(
            f"is missing: no checkpoint directory at {tmp_path / 'not-mounted'} on this host: "
            "mount the checkpoint volume here, or the files were deleted"
        )
    assert not (tmp_path / "not-mounted").exists()  # verifying creates nothing


def test_it_fails_when_one_chains_checkpoint_file_is_deleted(project_chain):
    checkpoints.path_for(project_chain.key).unlink()
    status, _, err = verify_audit()
    assert status == 1
    (line,) = err.splitlines()
    assert line.startswith(f"TAMPERING DETECTED: {project_chain.key}: chain: the checkpoint of ")
    assert "recorded in the global chain at event #" in line and "was deleted" in line


def test_it_fails_when_a_recorded_line_is_removed_from_a_checkpoint_file(project_chain):
    path = checkpoints.path_for(project_chain.key)
    first, _second = path.read_text().splitlines()
    path.write_text(first + "\n")  # back to the first checkpoint, as if the second never was
    status, _, err = verify_audit("--project", project_chain.project.slug)
    assert status == 1
    assert "is missing: its file" in err and "no longer holds it (rewritten)" in err


@pytest.mark.parametrize("meanwhile", ["the chain grew", "nothing happened"])
def test_a_slower_checkpoint_writer_never_appends_a_stale_line(
    project_chain, team, monkeypatch, meanwhile
):
    """Beat's task and a hand-run `audit_checkpoint` overlap: writer A verifies the project's
    chain, then writer B verifies and checkpoints it (after more events, or none), then A
    appends. A must not write its older (or same) line after B's."""
    key = project_chain.key
    path = checkpoints.path_for(key)
    comment(team, "to checkpoint")
    real_verify = verification.verify_chain
    overtaken = []

    def verify_then_overtaken(chain, *args):
        outcome = real_verify(chain, *args)
        if chain.key == key and not overtaken:
            overtaken.append(chain.key)  # writer B runs now, between A's verify and A's write
            if meanwhile == "the chain grew":
                comment(team, "while writer A was verifying")
            assert verification.write_checkpoints().checkpointed >= 1
        return outcome

    monkeypatch.setattr(verification, "verify_chain", verify_then_overtaken)
    report = verification.write_checkpoints()  # writer A
    assert overtaken == [key]
    assert report.ok, report.problems

    lengths = [c.length for c in checkpoints.read(path)]
    assert lengths == sorted(set(lengths))  # never fewer events than the line before, no repeat
    chain = AuditChain.objects.get(pk=project_chain.pk)
    assert lengths[-1] == chain.length
    recorded = verification.recorded_checkpoints(chain)[key]
    assert [r.checkpoint.length for r in recorded] == lengths
    status, _, err = verify_audit()
    assert (status, err) == (0, "")


def test_a_checkpoint_writer_holds_the_chains_file_until_its_line_is_written(project_chain):
    """Another process (or container sharing the volume) taking the same lock waits."""
    import fcntl

    path = checkpoints.path_for(project_chain.key)
    with checkpoints.locked(project_chain.key) as lines:
        assert [c.length for c in lines] == [c.length for c in checkpoints.read(path)]
        other = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    other = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        os.close(other)


# --- 7. Ed25519, every line, a key in production ------------------------------------------------


@pytest.mark.parametrize("more_events", [0, 1])
def test_a_forged_line_appended_after_a_reseal_fails(project_chain, more_events):
    """Even signed with the installation's own key, the new line cannot make the earlier
    checkpoints agree with the rewritten chain (with or without events added after it)."""
    path = checkpoints.path_for(project_chain.key)
    first = checkpoints.read(path)[0]
    rewrite_quietly(project_chain, 2)
    for _ in range(more_events):
        record(actor=None, action="comment.add", project=project_chain.project, reason="later")
    chain = AuditChain.objects.get(pk=project_chain.pk)
    checkpoints.append(chain.key, chain.length, chain.head_hash, checkpoints.now_iso())
    status, _, err = verify_audit("--project", chain.project.slug)
    assert status == 1
    if more_events:
        assert (
            f"TAMPERING DETECTED: {chain.key}: event #{first.length}: differs from the "
            f"checkpoint of {first.time}: the chain up to this event was rewritten"
        ) in err
    else:
        assert f"{path}: line 3 records another head for event #{chain.length} than line 2" in err


def test_a_forged_legacy_hmac_line_after_a_reseal_fails(project_chain, settings):
    """The HMAC key defaulted to one derived from SECRET_KEY: whoever knows it could sign."""
    import hashlib
    import hmac

    rewrite_quietly(project_chain, 2)
    chain = AuditChain.objects.get(pk=project_chain.pk)
    key = settings.AUDIT_CHECKPOINT_KEY.encode()
    fields = {
        "chain": chain.key,
        "length": chain.length,
        "head": chain.head_hash,
        "time": checkpoints.now_iso(),
        "key_id": checkpoint_format.hmac_key_id(key),
    }
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    signature = hmac.new(key, message, hashlib.sha256).hexdigest()
    path = checkpoints.path_for(chain.key)
    with path.open("a") as handle:
        handle.write(json.dumps({**fields, "signature": signature}, sort_keys=True) + "\n")
    status, _, err = verify_audit()
    assert status == 1
    assert f"{path}: line 3 is signed with the legacy HMAC key after lines signed with Ed25519" in (
        err
    )


def test_a_line_signed_with_another_ed25519_key_fails(project_chain, settings):
    stranger = Ed25519PrivateKey.generate()
    chain = project_chain
    forged = checkpoint_format.sign(
        stranger, chain.key, chain.length, chain.head_hash, checkpoints.now_iso()
    )
    path = checkpoints.path_for(chain.key)
    with path.open("a") as handle:
        handle.write(forged.as_json() + "\n")
    status, _, err = verify_audit()
    assert status == 1
    assert f"{path}: line 3 has an invalid signature: signed with {forged.key_id}" in err


def test_checkpoints_verify_with_the_public_key_alone(team, settings):
    private = Ed25519PrivateKey.generate()
    public = checkpoint_format.encode_public(private.public_key())
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = checkpoint_format.encode_private(private)
    comment(team)
    assert verification.write_checkpoints().ok
    line = json.loads(checkpoints.path_for(f"project:{team.project.slug}").read_text())
    assert line["key_id"] == checkpoint_format.key_id(private.public_key())

    # A verifying host (or an auditor) has only the public key.
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = ""
    settings.AUDIT_CHECKPOINT_PUBLIC_KEY = public
    status, out, err = verify_audit()
    assert (status, err) == (0, "")
    assert f"{AuditChain.objects.count()} chain(s) matched their checkpoints" in out
    comment(team, "something new to checkpoint")
    with pytest.raises(ImproperlyConfigured, match="can verify checkpoints but not write them"):
        verification.write_checkpoints()

    # Another public key does not verify them.
    settings.AUDIT_CHECKPOINT_PUBLIC_KEY = checkpoint_format.encode_public(
        Ed25519PrivateKey.generate().public_key()
    )
    status, _, err = verify_audit()
    assert status == 1 and "which is not a trusted public key" in err


def test_keys_are_read_from_pem_files_made_by_audit_keygen(team, settings, tmp_path):
    out = io.StringIO()
    call_command(
        "audit_keygen", "--pem-dir", str(tmp_path / "keys"), stdout=out, stderr=io.StringIO()
    )
    settings_lines = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert set(settings_lines) == {"AUDIT_CHECKPOINT_SIGNING_KEY", "AUDIT_CHECKPOINT_PUBLIC_KEY"}
    assert (tmp_path / "keys/audit-checkpoint-signing.pem").stat().st_mode & 0o777 == 0o600
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = str(tmp_path / "keys/audit-checkpoint-signing.pem")
    settings.AUDIT_CHECKPOINT_PUBLIC_KEY = str(tmp_path / "keys/audit-checkpoint-public.pem")
    assert verification.write_checkpoints().ok
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = ""
    settings.AUDIT_CHECKPOINT_PUBLIC_KEY = settings_lines["AUDIT_CHECKPOINT_PUBLIC_KEY"]
    assert verify_audit()[0] == 0


def _check_deploy(tmp_path, **extra) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "ENV_FILE": str(tmp_path / "absent.env"),  # no developer .env
        "DEBUG": "0",
        "SECRET_KEY": "a-production-secret-key-" + "x" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **extra,
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_production_without_a_checkpoint_key_fails_check_deploy(tmp_path):
    done = _check_deploy(tmp_path)
    assert done.returncode != 0
    assert (
        "audits.E001) AUDIT_CHECKPOINT_SIGNING_KEY is not set: audit checkpoints would be "
        "signed with the development key derived from SECRET_KEY." in done.stderr
    )
    assert "manage.py audit_keygen" in done.stderr


def test_production_with_a_checkpoint_key_passes_that_check(tmp_path):
    private = Ed25519PrivateKey.generate()
    done = _check_deploy(
        tmp_path,
        AUDIT_CHECKPOINT_SIGNING_KEY=checkpoint_format.encode_private(private),
        AUDIT_CHECKPOINT_PUBLIC_KEY=checkpoint_format.encode_public(private.public_key()),
    )
    for check in ("audits.E001", "audits.E002", "audits.E003"):
        assert check not in done.stderr + done.stdout


def test_a_public_key_that_does_not_match_the_signing_key_is_an_error(tmp_path):
    done = _check_deploy(
        tmp_path,
        AUDIT_CHECKPOINT_SIGNING_KEY=checkpoint_format.encode_private(Ed25519PrivateKey.generate()),
        AUDIT_CHECKPOINT_PUBLIC_KEY=checkpoint_format.encode_public(
            Ed25519PrivateKey.generate().public_key()
        ),
    )
    assert done.returncode != 0
    assert "audits.E003) AUDIT_CHECKPOINT_PUBLIC_KEY does not include the public key" in (
        done.stderr
    )


# --- 8. The append-only triggers ----------------------------------------------------------------


@pytest.mark.parametrize("table", triggers.APPEND_ONLY_TABLES)
def test_dropping_an_append_only_trigger_alone_fails_verification(team, table):
    assert verify_audit()[0] == 0
    for name in tamper.trigger_names(table):
        tamper.drop_trigger(name, table)
        status, _, err = verify_audit()
        assert status == 1
        assert (
            f"TAMPERING DETECTED: database: append-only triggers: trigger {name} on {table} is "
            "missing: the table is no longer append-only"
        ) in err
        triggers.uninstall(connection, table)  # put them all back
        triggers.install(connection, table)
        assert verify_audit()[0] == 0


def test_a_trigger_replaced_by_a_harmless_one_fails_verification(team):
    table = tamper.TABLE
    if connection.vendor == "postgresql":
        replaced = "function refuse_append_only_change() was altered"
        statement = (
            "CREATE OR REPLACE FUNCTION refuse_append_only_change() RETURNS trigger AS $$ "
            "BEGIN RETURN OLD; END; $$ LANGUAGE plpgsql"
        )
    else:
        name = tamper.trigger_names(table)[0]
        replaced = f"trigger {name} on {table} was altered"
        tamper.drop_trigger(name, table)
        statement = f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} BEGIN SELECT 1; END"
    with connection.cursor() as cursor:
        cursor.execute(statement)
    status, _, err = verify_audit()
    assert status == 1 and replaced in err


def test_a_disabled_trigger_fails_verification_on_postgresql(postgres, team):
    table = "governance_signature"
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
    status, _, err = verify_audit()
    assert status == 1
    assert f"trigger {table}_append_only on {table} is disabled" in err


EVENTS = tamper.TABLE
NEUTERED = {
    # (table, how the trigger was neutered, the SQL, what verify_audit says)
    "replica": (
        EVENTS,
        "ALTER TABLE {table} ENABLE REPLICA TRIGGER {table}_append_only",
        "trigger {table}_append_only on {table} fires only in replication sessions (ENABLE "
        "REPLICA TRIGGER): the table is no longer append-only",
    ),
    "when-false": (
        EVENTS,
        "DROP TRIGGER {table}_append_only ON {table}; CREATE TRIGGER {table}_append_only BEFORE "
        "UPDATE OR DELETE ON {table} FOR EACH ROW WHEN (false) EXECUTE FUNCTION "
        "refuse_append_only_change()",
        'trigger {table}_append_only on {table} was altered: it is defined as "CREATE TRIGGER '
        "{table}_append_only BEFORE DELETE OR UPDATE ON public.{table} FOR EACH ROW WHEN (false) "
        'EXECUTE FUNCTION refuse_append_only_change()", not as installed',
    ),
    "wrong-events": (
        EVENTS,
        "DROP TRIGGER {table}_append_only ON {table}; CREATE TRIGGER {table}_append_only BEFORE "
        "INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()",
        'trigger {table}_append_only on {table} was altered: it is defined as "CREATE TRIGGER '
        "{table}_append_only BEFORE INSERT ON public.{table} FOR EACH STATEMENT EXECUTE "
        'FUNCTION refuse_append_only_change()", not as installed',
    ),
    "deletes-let-through": (
        "governance_signature",
        "DROP TRIGGER {table}_append_only ON {table}; CREATE TRIGGER {table}_append_only BEFORE "
        "UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()",
        "trigger {table}_append_only on {table} was altered: it is defined as",
    ),
    "signature-replica": (
        "governance_signature",
        "ALTER TABLE {table} ENABLE REPLICA TRIGGER {table}_append_only",
        "trigger {table}_append_only on {table} fires only in replication sessions",
    ),
}


@pytest.mark.parametrize("case", NEUTERED)
def test_a_neutered_trigger_fails_verification_on_postgresql(postgres, team, case):
    """Enabled for replication only, recreated WHEN (false) or on other events: the trigger is
    still there and still calls the right function, but no longer refuses the change."""
    comment(team)
    table, statement, message = NEUTERED[case]
    assert verify_audit()[0] == 0
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for part in statement.format(table=table).split("; "):
            cursor.execute(part)
        if table == EVENTS and case != "wrong-events":
            # Neutered indeed: an ordinary session may now rewrite an event.
            cursor.execute(f"UPDATE {table} SET id = id WHERE id = (SELECT min(id) FROM {table})")
            assert cursor.rowcount == 1
    status, _, err = verify_audit()
    assert status == 1
    assert (
        "TAMPERING DETECTED: database: append-only triggers: " + message.format(table=table)
    ) in err
    triggers.uninstall(connection, table)  # as migrations install them: verifies again
    triggers.install(connection, table)
    assert verify_audit()[0] == 0


# --- 15. Offline verification needs no configuration ---------------------------------------------

EMPTY_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def standalone(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m audits.verify_export` with nothing but PATH: no DEBUG, SECRET_KEY,
    DATABASE_URL, DJANGO_SETTINGS_MODULE, nor a .env where it runs."""
    return subprocess.run(
        [sys.executable, "-m", "audits.verify_export", *args],
        cwd=cwd,
        env=EMPTY_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def export(team, path: Path, project=True) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        audit_export(actor=None, project=team.project if project else None, out=handle)
    return path


def test_the_standalone_verifier_needs_no_configuration_at_all(team, tmp_path):
    comment(team)
    path = export(team, tmp_path / "ed.jsonl")
    assert not (tmp_path / ".env").exists()
    done = standalone(str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK: {path}: chain project:{team.project.slug}, ")
    # manage.py verify_audit --file runs the very same check.
    status, out, _ = verify_audit("--file", str(path))
    assert (status, out) == (0, done.stdout)

    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace('"actor_name":"', '"actor_name":"Mallory ', 1)
    path.write_text("\n".join(lines) + "\n")
    done = standalone(str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert (
        f"TAMPERING DETECTED: {path}: project:{team.project.slug}: event #3 (id line 4): content "
        "does not match its hash" in done.stderr
    )


def test_the_standalone_verifier_imports_nothing_of_django(tmp_path):
    probe = (
        "import sys, audits.verify_export; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'config'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=EMPTY_ENV, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_the_standalone_verifier_checks_checkpoints_with_the_public_key(team, tmp_path, settings):
    private = Ed25519PrivateKey.generate()
    settings.AUDIT_CHECKPOINT_SIGNING_KEY = checkpoint_format.encode_private(private)
    public = checkpoint_format.encode_public(private.public_key())
    comment(team)
    assert verification.write_checkpoints().ok
    comment(team, "later")
    assert verification.write_checkpoints().ok

    # The global chain records every checkpoint: its export carries their signatures.
    global_export = export(team, tmp_path / "global.jsonl", project=False)
    done = standalone(str(global_export), "--public-key", public, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{AuditChain.objects.count() + 1} recorded checkpoint signature(s) verified." in (
        done.stdout
    )
    stranger = checkpoint_format.encode_public(Ed25519PrivateKey.generate().public_key())
    done = standalone(str(global_export), "--public-key", stranger, cwd=tmp_path)
    assert done.returncode == 1
    assert "the checkpoint it records has an invalid signature" in done.stderr

    # A project's export against its checkpoint file.
    project_export = export(team, tmp_path / "ed.jsonl")
    checkpoint_file = checkpoints.path_for(f"project:{team.project.slug}")
    args = [str(project_export), "--public-key", public, "--checkpoints", str(checkpoint_file)]
    done = standalone(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"2 of 2 checkpoint(s) in {checkpoint_file} matched" in done.stdout
    lines = checkpoint_file.read_text().splitlines()
    data = json.loads(lines[0])
    data["head"] = "f" * 64
    checkpoint_file.write_text(json.dumps(data) + "\n" + lines[1] + "\n")
    done = standalone(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert f"{checkpoint_file}: line 1 has an invalid signature" in done.stderr
