"""Verification at the speed of hashing: the fast walk over PostgreSQL's binary COPY, the fast
pass over export files, and the timeline's check from the last verified point. Each must
find what the row-by-row walk finds and say it the same way."""

import io
import json

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from audits import chain as hashchain
from audits import checkpoints, verification
from audits.models import AuditChain
from audits.services import audit_export
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from tests.audits import tamper

pytestmark = pytest.mark.django_db


def add_events(team, count: int) -> AuditChain:
    item = team.project.checklist_items.first()
    for n in range(count):
        checklist_services.comment_add(actor=team[Role.COMMITTEE_MEMBER], item=item, body=f"{n}")
    return AuditChain.objects.get(project=team.project)


def row_by_row(chain: AuditChain) -> hashchain.WalkResult:
    return hashchain.walk(chain.key, verification.iter_rows(chain), remember={3, chain.length})


def test_the_fast_walk_agrees_with_the_row_by_row_walk(team):
    chain = add_events(team, 5)
    fast = verification.walk_chain(chain, remember={3, chain.length})
    slow = row_by_row(chain)
    assert fast.problem is None and slow.problem is None
    assert (fast.length, fast.head, fast.hashes_at) == (slow.length, slow.head, slow.hashes_at)
    assert fast.head == chain.head_hash and fast.length == chain.length
    # From a verified point, only what follows is walked, and it ends at the same head.
    middle = verification.walk_chain(chain, after=(3, slow.hashes_at[3]))
    assert (middle.length, middle.head, middle.problem) == (chain.length, chain.head_hash, None)


@pytest.mark.parametrize(
    "tampering",
    [
        (tamper.edit_payload, 4),
        (tamper.edit_column, 4),
        (tamper.edit_and_reseal, 4),
        (tamper.delete, 4),
        (tamper.insert_after, 4),
        (tamper.fork_at, 4),
        (tamper.swap_positions, 4, 5),
    ],
    ids=lambda t: t[0].__name__,
)
def test_the_fast_walk_names_the_problem_the_row_by_row_walk_names(team, tampering):
    chain = add_events(team, 6)
    tamper.strip_protections()
    action, *args = tampering
    action(chain, *args)
    fast = verification.walk_chain(chain).problem
    slow = row_by_row(chain).problem
    assert fast is not None and str(fast) == str(slow)


def test_a_fork_that_chains_on_is_found(team):
    # A second event 4 sealed after the genuine event 4: every link holds but one.
    chain = add_events(team, 6)
    tamper.strip_protections()
    genuine = tamper.event_at(chain, 4)
    payload = genuine.payload.replace('"reason":"', '"reason":"second ', 1)
    tamper._insert_row(chain, genuine, 4, payload, genuine.hash)
    problem = verification.walk_chain(chain).problem
    assert problem is not None and "appears again" in problem.message


def test_an_event_recorded_on_a_whole_second_verifies(postgres, team, monkeypatch):
    # PostgreSQL prints such a time without microseconds: the row is rechecked on its own.
    moment = timezone.now().replace(microsecond=0)
    monkeypatch.setattr("audits.trail.timezone.now", lambda: moment)
    add_events(team, 1)
    monkeypatch.undo()
    chain = add_events(team, 2)
    assert verification.walk_chain(chain).problem is None
    tamper.strip_protections()
    tamper.edit_column(chain, chain.length - 2)
    problem = verification.walk_chain(chain).problem
    assert problem.sequence == chain.length - 2 and "indexed columns" in problem.message


def test_a_server_printing_times_otherwise_still_verifies(postgres, team):
    chain = add_events(team, verification._RECHECK_LIMIT + 5)
    with connection.cursor() as cursor:
        cursor.execute("SET DateStyle TO 'SQL, DMY'")
        try:
            assert verification.walk_chain(chain).problem is None
        finally:
            cursor.execute("RESET DateStyle")


def export_lines(team) -> list[str]:
    out = io.StringIO()
    audit_export(actor=None, project=team.project, out=out)
    return out.getvalue().splitlines(keepends=True)


def test_the_fast_export_pass_agrees_with_the_row_by_row_walk(team):
    add_events(team, 4)
    lines = export_lines(team)
    header, result = hashchain.verify_export(lines, remember={2})
    slow = hashchain.walk(header["chain"], hashchain.rows_from_export(lines[1:]), remember={2})
    assert result.problem is None
    assert (result.length, result.head, result.hashes_at) == (
        slow.length,
        slow.head,
        slow.hashes_at,
    )


@pytest.mark.parametrize("where", [2, 4])
def test_a_bad_export_line_is_named_by_its_line_number(team, where):
    add_events(team, 4)
    lines = export_lines(team)
    lines[where] = lines[where].replace('"actor_name":"', '"actor_name":"Mallory ', 1)
    _, result = hashchain.verify_export(lines)
    assert result.problem is not None and result.problem.event_id == f"line {where + 1}"
    assert "does not match its hash" in result.problem.message


def test_a_blank_line_in_an_export_is_still_accepted(team):
    add_events(team, 3)
    lines = export_lines(team)
    lines.insert(2, "\n")
    _, result = hashchain.verify_export(lines)
    assert result.problem is None and result.length == len(lines) - 2


def test_the_timeline_check_finds_tampering_after_its_starting_point(team):
    verification.write_checkpoints()
    chain = add_events(team, 8)
    tamper.strip_protections()
    start = verification.verify_latest(chain)
    assert start.problem is None and start.recomputed == 8
    for action, *args in [
        (tamper.edit_payload, chain.length - 3),
        (tamper.edit_column, chain.length - 3),
        (tamper.delete, chain.length - 3),
        (tamper.insert_after, chain.length - 3),
        (tamper.fork_at, chain.length - 3),
        (tamper.rewrite_from, 2),  # before the checkpoint: the signed head no longer matches
        (tamper.truncate_tail, 3),
    ]:
        with transaction.atomic():
            action(chain, *args)
            cache.clear()
            status = verification.verify_latest(AuditChain.objects.get(pk=chain.pk))
            assert status.problem is not None, action.__name__
            transaction.set_rollback(True)


# --- Found in review: each was a way past the fast checks, a false alarm or a crash ----------


def test_an_edited_sequence_column_is_found(team):
    chain = add_events(team, 6)
    tamper.strip_protections()
    tamper._sql(  # events numbered 1, 2, 3, 4, 4, 6
        f"UPDATE {tamper.TABLE} SET sequence = 4 WHERE id = %s", [tamper.event_at(chain, 5).id]
    )
    problem = verification.walk_chain(chain).problem
    assert problem is not None and str(problem) == str(row_by_row(chain).problem)


def test_a_previous_hash_widened_and_resealed_is_found(postgres, team):
    chain = add_events(team, 6)
    tamper.strip_protections()
    tamper._sql(f"ALTER TABLE {tamper.TABLE} ALTER COLUMN prev_hash TYPE varchar(80)", [])
    last = tamper.event_at(chain, chain.length)
    prev = last.prev_hash + "X"
    forged = last.payload.replace('"reason":"', '"reason":"forged ', 1)
    tamper._sql(
        f"UPDATE {tamper.TABLE} SET prev_hash = %s, payload = %s, hash = %s WHERE id = %s",
        [prev, forged, hashchain.seal(prev, forged), last.id],
    )
    problem = verification.walk_chain(chain).problem
    assert problem is not None and str(problem) == str(row_by_row(chain).problem)


@pytest.mark.parametrize("chain_key", ["%d%s", 5, "", "project:a b"])
def test_an_export_header_with_a_malformed_chain_is_refused(team, chain_key):
    add_events(team, 2)
    lines = export_lines(team)
    header = json.loads(lines[0])
    header["chain"] = chain_key
    lines[0] = json.dumps(header) + "\n"
    with pytest.raises(ValueError, match="line 1: the header's chain"):
        hashchain.verify_export(lines)


def test_an_export_line_that_is_not_utf8_is_refused_by_line(team):
    add_events(team, 3)
    lines = [line.encode() for line in export_lines(team)]
    lines[2] = lines[2].replace(b'"reason":"', b'"reason":"\xff', 1)
    with pytest.raises(ValueError, match="line 3: not UTF-8"):
        hashchain.verify_export(lines)


def test_the_head_event_edited_after_a_view_is_found(team):
    verification.write_checkpoints()
    chain = add_events(team, 3)
    assert verification.verify_latest(chain).problem is None  # caches the head
    tamper.strip_protections()
    tamper.edit_payload(chain, chain.length)
    problem = verification.verify_latest(AuditChain.objects.get(pk=chain.pk)).problem
    assert problem is not None and problem.sequence == chain.length


def test_a_checkpoint_written_during_the_view_is_no_false_alarm(team, monkeypatch):
    verification.write_checkpoints()
    chain = add_events(team, 3)
    latest = checkpoints.latest

    def job_runs_meanwhile(key):
        verification.write_checkpoints()
        return latest(key)

    monkeypatch.setattr(checkpoints, "latest", job_runs_meanwhile)
    assert verification.verify_latest(chain).problem is None


def test_a_head_read_before_another_view_verified_more_is_no_false_alarm(team):
    chain = add_events(team, 3)
    stale = AuditChain.objects.get(pk=chain.pk)
    add_events(team, 2)
    assert verification.verify_latest(AuditChain.objects.get(pk=chain.pk)).problem is None
    status = verification.verify_latest(stale)
    assert status.problem is None and status.length == chain.length + 2


@pytest.mark.parametrize(
    "content", [b"\xff\xfe\n", b"x" * 100_000, b"[" * 100_000 + b"\n", b"{}\n", b"null\n"]
)
def test_a_checkpoint_file_ending_in_garbage_is_reported(team, content):
    chain = add_events(team, 1)
    path = checkpoints.path_for(chain.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with pytest.raises(checkpoints.CheckpointError, match="last line"):
        checkpoints.latest(chain.key)
    assert "not a checkpoint" in str(verification.verify_latest(chain).problem)


@pytest.mark.parametrize("content", [b"", b"\n\n\n"])
def test_an_empty_checkpoint_file_has_no_checkpoint(team, content):
    chain = add_events(team, 1)
    path = checkpoints.path_for(chain.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    assert checkpoints.latest(chain.key) is None
