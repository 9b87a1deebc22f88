"""Verifying the stored chains: every hash and link, the chain heads, and the checkpoints."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection

from audits import chain as hashchain
from audits import checkpoints
from audits.chain import Problem
from audits.models import AuditChain

_COLUMNS = (
    "id, sequence, prev_hash, hash, {at}, actor_type, actor_user_id, actor_token_id, action, "
    "target_type, target_id, payload"
)
# PostgreSQL formats the time exactly as audits.chain.format_time does, in C.
_PG_TIME = """to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
_ORDER = " FROM audits_auditevent WHERE chain_id = %s ORDER BY sequence, id"


def _sqlite_time(stored: datetime) -> str:
    # Django's SQLite backend hands back naive datetimes that are in UTC.
    return hashchain.format_time(stored.replace(tzinfo=UTC))


def iter_rows(chain: AuditChain, chunk_size: int = 10_000) -> Iterator[hashchain.Row]:
    """The chain's events in stored order (sequence, then id), as verification rows.

    Plain SQL with a server-side cursor on PostgreSQL: verification reads every event, and the
    ORM's per-row cost would be most of its time.
    """
    if connection.vendor == "postgresql":
        # COPY streams rows with the least work per row on both sides; it cannot take
        # parameters, so the chain id (an integer from our own row) is formatted in.
        query = f"COPY (SELECT {_COLUMNS.format(at=_PG_TIME)}{_ORDER % int(chain.pk)}) TO STDOUT"
        with connection.cursor() as cursor, cursor.cursor.copy(query) as copy:
            copy.set_types(
                [
                    "int8",
                    "int8",
                    "text",
                    "text",
                    "text",
                    "text",
                    "int8",
                    "int8",
                    "text",
                    "text",
                    "text",
                    "text",
                ]
            )
            yield from copy.rows()
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + _COLUMNS.format(at="recorded_at") + _ORDER, [chain.pk])
        while rows := cursor.fetchmany(chunk_size):
            for row in rows:
                yield (*row[:4], _sqlite_time(row[4]), *row[5:])


@dataclass
class Report:
    """The outcome of verifying one or more chains."""

    chains: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)
    checkpointed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(
    chain: AuditChain, checkpoint: checkpoints.Checkpoint | None = None
) -> tuple[hashchain.WalkResult, Problem | None]:
    """Walk one chain and compare its end with the chain head and the last checkpoint."""
    # The head row is read before the events, so writers may have appended since: the head
    # must be a point on the walked chain, not necessarily its end.
    remember = [chain.length] + ([checkpoint.length] if checkpoint else [])
    result = hashchain.walk(chain.key, iter_rows(chain), remember=remember)
    if result.problem:
        return result, result.problem
    result.hashes_at[0] = hashchain.GENESIS_HASH
    if result.length < chain.length or result.hashes_at.get(chain.length) != chain.head_hash:
        return result, Problem(
            chain.key,
            None,
            None,
            f"the chain head records {chain.length} events ending in {chain.head_hash[:12]}…, "
            f"but the events end at #{result.length} ({result.head[:12]}…): the tail was "
            "deleted or rewritten",
        )
    if checkpoint is not None:
        if result.length < checkpoint.length:
            return result, Problem(
                chain.key,
                None,
                None,
                f"the checkpoint of {checkpoint.time} recorded {checkpoint.length} events, the "
                f"chain now has {result.length}: events were removed or an older backup was "
                "restored",
            )
        if result.hashes_at.get(checkpoint.length) != checkpoint.head:
            return result, Problem(
                chain.key,
                checkpoint.length,
                None,
                f"differs from the checkpoint of {checkpoint.time}: the chain up to this event "
                "was rewritten, or a different backup was restored",
            )
    return result, None


def verify(*, project_slug: str | None = None, use_checkpoints: bool = True) -> Report:
    """Verify every chain (or one project's) against its head and its last checkpoint."""
    report = Report()
    chains = AuditChain.objects.order_by("key")
    if project_slug is not None:
        chains = chains.filter(project__slug=project_slug)
    latest: dict[str, checkpoints.Checkpoint] = {}
    if use_checkpoints:
        try:
            latest = checkpoints.latest_by_chain()
        except checkpoints.CheckpointError as exc:
            report.problems.append(Problem("checkpoints", None, None, str(exc)))
            return report
    seen = set()
    for chain in chains:
        seen.add(chain.key)
        result, problem = verify_chain(chain, latest.get(chain.key))
        report.chains += 1
        report.events += result.length
        report.checkpointed += chain.key in latest
        if problem:
            report.problems.append(problem)
    if project_slug is None:
        for key in sorted(set(latest) - seen):
            report.problems.append(
                Problem(key, None, None, "has checkpoints but is missing from the database")
            )
    return report


def write_checkpoints() -> Report:
    """Verify every chain and, for each one that verifies, append a signed checkpoint.

    A chain that fails gets no new checkpoint: the last good one stays the reference.
    """
    report = Report()
    latest = checkpoints.latest_by_chain()
    for chain in AuditChain.objects.order_by("key"):
        result, problem = verify_chain(chain, latest.get(chain.key))
        report.chains += 1
        report.events += result.length
        if problem:
            report.problems.append(problem)
            continue
        previous = latest.get(chain.key)
        if previous is None or (previous.length, previous.head) != (result.length, result.head):
            checkpoints.append(chain.key, result.length, result.head, checkpoints.now_iso())
            report.checkpointed += 1
    return report
