"""Verifying the stored chains: every hash and link, the chain heads, every checkpoint, the
checkpoints the global chain says were written, and the append-only triggers."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction

from audits import chain as hashchain
from audits import checkpoint_format, checkpoints, triggers
from audits.chain import GLOBAL_CHAIN, Problem
from audits.checkpoint_format import Checkpoint, CheckpointError
from audits.models import Action, AuditChain, AuditEvent
from audits.trail import record

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
            try:
                yield from copy.rows()
            finally:
                # A walk stops at the first problem, leaving the COPY half read; psycopg would
                # then cancel it, which aborts the caller's transaction (the checkpoint task's,
                # a test's savepoint). Reading the rest leaves the connection usable.
                while copy.read_row() is not None:
                    pass
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


@dataclass(frozen=True)
class Recorded:
    """A checkpoint as the global chain recorded it when it was written."""

    sequence: int  # of the audit.checkpoint event in the global chain
    checkpoint: Checkpoint
    file: str


def recorded_checkpoints(chain: AuditChain | None = None) -> dict[str, list[Recorded]]:
    """The checkpoints recorded in the global chain (of one chain, or all), oldest first.

    The events are read as stored; the walk of the global chain proves they are genuine.
    """
    events = AuditEvent.objects.filter(chain__key=GLOBAL_CHAIN, action=Action.AUDIT_CHECKPOINT)
    if chain is not None:
        events = events.filter(target_type="audits.auditchain", target_id=str(chain.pk))
    found: dict[str, list[Recorded]] = {}
    for sequence, payload in events.order_by("sequence").values_list("sequence", "payload"):
        try:
            after = json.loads(payload)["after"]
            checkpoint = Checkpoint.from_record(after)
        except (ValueError, KeyError, TypeError):
            continue  # an edited event: the walk of the global chain names it
        found.setdefault(checkpoint.chain, []).append(Recorded(sequence, checkpoint, after["file"]))
    return found


def _missing(
    chain: AuditChain, lines: list[Checkpoint], recorded: Iterable[Recorded]
) -> Problem | None:
    present = {(c.length, c.head, c.signature) for c in lines}
    for entry in recorded:
        written = entry.checkpoint
        if (written.length, written.head, written.signature) in present:
            continue
        folder = checkpoints.directory()
        path = folder / entry.file
        if not folder.is_dir():
            # Most often a host (or container) that does not mount the checkpoint volume the
            # writer uses: still a failure, since the files cannot be checked here.
            why = (
                f"no checkpoint directory at {folder} on this host: mount the checkpoint volume "
                "here, or the files were deleted"
            )
        elif not path.exists():
            why = f"its file {path} was deleted"
        else:
            why = f"its file {path} no longer holds it (rewritten)"
        return Problem(
            chain.key,
            None,
            None,
            f"the checkpoint of {written.time} ({written.length} events, head "
            f"{written.head[:12]}…, key {written.key_id}), recorded in the global chain at event "
            f"#{entry.sequence}, is missing: {why}",
        )
    return None


def verify_chain(
    chain: AuditChain,
    lines: list[Checkpoint] | None = None,
    recorded: list[Recorded] | None = None,
) -> tuple[hashchain.WalkResult, Problem | None]:
    """Walk one chain; compare its end with the chain head, then every checkpoint line of its
    file, then require every checkpoint the global chain recorded to be in that file."""
    lines = lines or []
    recorded = recorded or []
    # The head row is read before the events, so writers may have appended since: the head
    # must be a point on the walked chain, not necessarily its end.
    remember = {chain.length}
    remember |= checkpoint_format.remembered(lines)
    remember |= checkpoint_format.remembered(r.checkpoint for r in recorded)
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
    problem = checkpoint_format.compare(chain.key, result, lines)
    problem = problem or _missing(chain, lines, recorded)
    problem = problem or checkpoint_format.compare(
        chain.key, result, [r.checkpoint for r in recorded]
    )
    return result, problem


def verify_one(chain: AuditChain) -> tuple[hashchain.WalkResult, Problem | None, Checkpoint | None]:
    """One chain against its head and checkpoints (the timeline page); also its last
    checkpoint."""
    try:
        lines = checkpoints.for_chain(chain.key)
    except CheckpointError as exc:
        return hashchain.WalkResult(chain=chain.key), Problem(chain.key, None, None, str(exc)), None
    recorded = recorded_checkpoints(chain).get(chain.key, [])
    result, problem = verify_chain(chain, lines, recorded)
    return result, problem, lines[-1] if lines else None


def trigger_problems() -> list[Problem]:
    return [
        Problem("database", None, None, message, where="append-only triggers")
        for message in triggers.missing(connection)
    ]


def verify(
    *, project_slug: str | None = None, use_checkpoints: bool = True, check_triggers: bool = True
) -> Report:
    """Verify every chain (or one project's) against its head and its checkpoints, and that
    the append-only triggers are in place."""
    report = Report()
    if check_triggers:
        report.problems.extend(trigger_problems())
    chains = AuditChain.objects.order_by("key")
    if project_slug is not None:
        chains = chains.filter(project__slug=project_slug)
    lines: dict[str, list[Checkpoint]] = {}
    recorded: dict[str, list[Recorded]] = {}
    if use_checkpoints:
        try:
            lines = checkpoints.by_chain()
        except CheckpointError as exc:
            report.problems.append(Problem("checkpoints", None, None, str(exc)))
            return report
        only = chains.first() if project_slug is not None else None
        if project_slug is None or only is not None:
            recorded = recorded_checkpoints(only)
    seen = set()
    for chain in chains:
        seen.add(chain.key)
        result, problem = verify_chain(chain, lines.get(chain.key), recorded.get(chain.key))
        report.chains += 1
        report.events += result.length
        report.checkpointed += chain.key in lines
        if problem:
            report.problems.append(problem)
    if project_slug is None:
        for key in sorted(set(lines) - seen):
            report.problems.append(
                Problem(key, None, None, "has checkpoints but is missing from the database")
            )
        for key in sorted(set(recorded) - seen - set(lines)):
            report.problems.append(
                Problem(
                    key, None, None, "has recorded checkpoints but is missing from the database"
                )
            )
    return report


def _only_checkpoints_since(chain: AuditChain, length: int) -> bool:
    return not (
        AuditEvent.objects.filter(chain=chain, sequence__gt=length)
        .exclude(action=Action.AUDIT_CHECKPOINT)
        .exists()
    )


def _due(chain: AuditChain, result: hashchain.WalkResult, lines: list[Checkpoint]) -> bool:
    """Whether the verified chain calls for a new checkpoint after the file's last line."""
    previous = lines[-1] if lines else None
    if previous is None:
        return True
    # Another writer got there first with a newer (or as new) verification: a line of this
    # one now would record fewer events than the line before, and the file would fail for good.
    if previous.length > result.length:
        return False
    # A chain whose last checkpoint is a legacy HMAC line gets an Ed25519 one, recorded in
    # the global chain, even if it did not grow: from then on its file must exist.
    if previous.is_legacy:
        return True
    if previous.length == result.length:
        return False
    # Recording checkpoints grows the global chain: that alone is no reason for another.
    return not (chain.key == GLOBAL_CHAIN and _only_checkpoints_since(chain, previous.length))


def checkpoint_chain(chain: AuditChain, result: hashchain.WalkResult) -> Checkpoint | None:
    """Append a signed checkpoint of the verified `result` to the chain's file and record it as
    an `audit.checkpoint` event of the global chain, unless the file already has it (or a newer
    one). Returns the checkpoint written, or None.

    The chain's file is locked from reading its last line until the event commits, so
    concurrent writers append in order: one that verified earlier than the last line skips.
    The event is written in the same transaction as the line, before it: a line whose event
    did not commit is harmless (it is still signed), an event without its line is tampering.
    """
    with checkpoints.locked(chain.key) as lines:
        if not _due(chain, result, lines):
            return None
        checkpoint = checkpoints.signed(
            chain.key, result.length, result.head, checkpoints.now_iso()
        )
        with transaction.atomic():
            record(
                actor=None,
                action=Action.AUDIT_CHECKPOINT,
                project=None,
                target=chain,
                target_type="audits.auditchain",
                after={
                    **checkpoint.fields(),
                    "signature": checkpoint.signature,
                    "file": checkpoints.path_for(chain.key).name,
                },
            )
            checkpoints.write(checkpoint)
    return checkpoint


def write_checkpoints() -> Report:
    """Verify every chain and, for each one that verifies and grew, append a signed checkpoint
    and record it as an `audit.checkpoint` event of the global chain (`checkpoint_chain`).

    A chain that fails gets no new checkpoint: the last good one stays the reference. Missing
    append-only triggers are reported, but do not stop the checkpoints of chains that verify.
    Safe to run concurrently with itself (beat's task and a hand-run `audit_checkpoint`).
    """
    report = Report(problems=trigger_problems())
    try:
        lines = checkpoints.by_chain()
    except CheckpointError as exc:
        report.problems.append(Problem("checkpoints", None, None, str(exc)))
        return report
    recorded = recorded_checkpoints()
    for chain in AuditChain.objects.order_by("key"):
        result, problem = verify_chain(chain, lines.get(chain.key), recorded.get(chain.key))
        report.chains += 1
        report.events += result.length
        if problem:
            report.problems.append(problem)
            continue
        # Most chains have not grown: decide that without taking the file's lock.
        if not _due(chain, result, lines.get(chain.key, [])):
            continue
        try:
            written = checkpoint_chain(chain, result)
        except CheckpointError as exc:  # the file changed since it was read: report, go on
            report.problems.append(Problem(chain.key, None, None, str(exc)))
            continue
        report.checkpointed += written is not None
    return report
