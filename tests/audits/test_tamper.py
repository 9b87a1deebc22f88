"""The tamper suite: every kind of change a database administrator could make to the trail,
at many random positions, on SQLite and on PostgreSQL (each pass of `make test`).

Each scenario runs inside a savepoint that is rolled back, so all positions tamper with the
same genuine chain. Verification must flag every single one (100% detection) and must pass the
untampered chain (no false alarms).
"""

import random

import pytest
from django.db import transaction

from audits import verification
from audits.models import AuditChain
from audits.trail import record
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from tests.audits import tamper
from tests.factories import make_team

pytestmark = pytest.mark.django_db

POSITIONS = 25  # random positions per scenario
CHAIN_LENGTH = 60


@pytest.fixture
def chain():
    """A project chain of about CHAIN_LENGTH genuine events, plus busy neighbour chains."""
    team = make_team()
    make_team()  # another project's chain must stay untouched and valid
    item = team.project.checklist_items.first()
    head = AuditChain.objects.get(project=team.project)
    while AuditChain.objects.get(pk=head.pk).length < CHAIN_LENGTH:
        checklist_services.comment_add(
            actor=team[Role.COMMITTEE_MEMBER], item=item, body="Reviewed."
        )
    record(actor=team.creator, action="auth.login", project=None)
    tamper.strip_protections()
    return AuditChain.objects.get(pk=head.pk)


def positions(rng: random.Random, low: int, high: int) -> list[int]:
    return [rng.randint(low, high) for _ in range(POSITIONS)]


def chain_problems(report: verification.Report) -> list[verification.Problem]:
    """The problems found in the chains: the fixture dropped the append-only triggers, which
    verification rightly reports as well."""
    return [p for p in report.problems if p.chain != "database"]


def detected(chain: AuditChain, **kwargs) -> verification.Problem:
    report = verification.verify(**kwargs)
    problems = chain_problems(report)
    assert problems, "tampering went undetected"
    assert [p.chain for p in problems] == [chain.key], problems
    return problems[0]


def tampered(chain: AuditChain, action, *args, **verify_kwargs) -> verification.Problem:
    """Apply one tampering inside a savepoint, verify, and roll the tampering back."""
    with transaction.atomic():
        action(chain, *args)
        problem = detected(chain, **verify_kwargs)
        transaction.set_rollback(True)
    return problem


def test_the_genuine_chain_verifies(chain):
    report = verification.verify()
    assert chain_problems(report) == [], report.problems
    assert report.events >= CHAIN_LENGTH
    assert chain_problems(verification.write_checkpoints()) == []
    assert chain_problems(verification.verify()) == []
    # Only the dropped triggers are reported, each by name.
    assert [str(p) for p in report.problems] == [
        f"database: append-only triggers: trigger {name} on audits_auditevent is missing: the "
        "table is no longer append-only (the trigger was dropped)"
        for name in tamper.trigger_names()
    ]


@pytest.mark.parametrize("seed", range(3))
def test_no_false_alarm_on_untampered_chains_of_random_length(seed):
    rng = random.Random(seed)
    team = make_team()
    item = team.project.checklist_items.first()
    for _ in range(rng.randint(0, 40)):
        checklist_services.comment_add(actor=team.creator, item=item, body=f"note {rng.random()}")
        if rng.random() < 0.2:
            assert verification.write_checkpoints().ok
    assert verification.verify().ok
    assert verification.verify(project_slug=team.project.slug).ok


def test_an_edited_event_is_named(chain):
    rng = random.Random(1)
    for k in positions(rng, 1, chain.length):
        problem = tampered(chain, tamper.edit_payload, k)
        assert problem.sequence == k
        assert "does not match its hash" in problem.message


def test_an_edited_index_column_is_named(chain):
    rng = random.Random(2)
    for k in positions(rng, 1, chain.length):
        problem = tampered(chain, tamper.edit_column, k)
        assert problem.sequence == k
        assert "indexed columns" in problem.message


def test_an_edited_event_with_its_own_hash_recomputed_breaks_the_next_link(chain):
    rng = random.Random(3)
    for k in positions(rng, 1, chain.length):
        problem = tampered(chain, tamper.edit_and_reseal, k)
        if k < chain.length:
            assert problem.sequence == k + 1
            assert f"does not follow event #{k}" in problem.message
        else:
            assert "chain head records" in problem.message


def test_a_deleted_event_is_detected(chain):
    rng = random.Random(4)
    for k in positions(rng, 1, chain.length):
        problem = tampered(chain, tamper.delete, k)
        if k < chain.length:
            assert problem.sequence == k + 1
            assert f"jumps from #{k - 1} to #{k + 1}" in problem.message
        else:
            assert "tail was deleted or rewritten" in problem.message


def test_an_inserted_event_is_detected(chain):
    rng = random.Random(5)
    for k in positions(rng, 1, chain.length - 1):
        problem = tampered(chain, tamper.insert_after, k)
        assert problem.sequence == k + 2
        assert "does not follow" in problem.message


def test_reordered_events_are_detected(chain):
    rng = random.Random(6)
    for k in positions(rng, 1, chain.length - 1):
        problem = tampered(chain, tamper.swap_positions, k, k + 1)
        assert problem.sequence == k


def test_swapped_events_are_detected(chain):
    rng = random.Random(7)
    for _ in range(POSITIONS):
        k, j = sorted(rng.sample(range(1, chain.length + 1), 2))
        problem = tampered(chain, tamper.swap_positions, k, j)
        assert problem.sequence == k


def test_a_fork_is_detected(chain):
    rng = random.Random(8)
    for k in positions(rng, 1, chain.length):
        problem = tampered(chain, tamper.fork_at, k)
        assert problem.sequence == k
        assert "forked chain" in problem.message


def test_a_fully_resealed_rewrite_is_caught_by_the_checkpoint(chain):
    assert chain_problems(verification.write_checkpoints()) == []
    rng = random.Random(9)
    for k in positions(rng, 1, chain.length):
        # Internally consistent: without the checkpoint nothing would show.
        with transaction.atomic():
            tamper.rewrite_from(chain, k)
            assert chain_problems(verification.verify(use_checkpoints=False)) == []
            transaction.set_rollback(True)
        problem = tampered(chain, tamper.rewrite_from, k)
        assert problem.sequence == chain.length
        assert "differs from the checkpoint" in problem.message


def test_a_truncated_tail_is_caught_by_the_checkpoint(chain):
    assert chain_problems(verification.write_checkpoints()) == []
    rng = random.Random(10)
    for keep in positions(rng, 0, chain.length - 1):
        problem = tampered(chain, tamper.truncate_tail, keep)
        assert f"recorded {chain.length} events, the chain now has {keep}" in problem.message


def test_a_restored_old_backup_is_caught_by_the_checkpoint(chain):
    """The database goes back to an older state, then life goes on and new events are written:
    the chain is valid and even longer than at the checkpoint, but it is another history."""
    assert chain_problems(verification.write_checkpoints()) == []
    project = chain.project
    actor = project.memberships.first().user
    rng = random.Random(11)
    for keep in positions(rng, 0, chain.length - 1):

        def restore_then_continue(chain, keep=keep):
            tamper.truncate_tail(chain, keep)
            for _ in range(chain.length - keep + 3):
                record(actor=actor, action="comment.add", project=project, reason="after restore")

        problem = tampered(chain, restore_then_continue)
        assert problem.sequence == chain.length
        assert "differs from the checkpoint" in problem.message


def test_verify_names_the_first_bad_event_when_several_are_bad(chain):
    with transaction.atomic():
        tamper.edit_payload(chain, 40)
        tamper.edit_payload(chain, 12)
        assert detected(chain).sequence == 12
        transaction.set_rollback(True)
