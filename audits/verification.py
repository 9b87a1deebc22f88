"""Verifying the stored chains: every hash and link, the chain heads, every checkpoint, the
checkpoints the global chain says were written, and the append-only triggers."""

import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.core.cache import cache
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
_RANGE = " FROM audits_auditevent WHERE chain_id = %s AND sequence > %s{through} ORDER BY {order}"
# (chain_id, sequence) is unique, so the sequence alone orders a chain; the walk that says what
# is wrong also orders by id, so that events numbered alike (the constraint dropped) come in
# the same order every time.
_ORDER, _ORDER_STABLE = "sequence", "sequence, id"


def _sqlite_time(stored: datetime) -> str:
    # Django's SQLite backend hands back naive datetimes that are in UTC.
    return hashchain.format_time(stored.replace(tzinfo=UTC))


def iter_rows(
    chain: AuditChain, *, after: int = 0, through: int | None = None, chunk_size: int = 10_000
) -> Iterator[hashchain.Row]:
    """The chain's events after sequence `after` (through `through`), in stored order, as
    verification rows. Plain SQL: verification reads every event, and the ORM's per-row cost
    would be most of its time.
    """
    through_sql = "" if through is None else f" AND sequence <= {int(through)}"
    where = _RANGE.format(through=through_sql, order=_ORDER_STABLE)
    if connection.vendor == "postgresql":
        # COPY streams rows with the least work per row on both sides; it cannot take
        # parameters, so the integers (from our own rows) are formatted in.
        query = (
            f"COPY (SELECT {_COLUMNS.format(at=_PG_TIME)}"
            f"{where % (int(chain.pk), int(after))}) TO STDOUT"
        )
        with connection.cursor() as cursor, cursor.cursor.copy(query) as copy:
            copy.set_types(["int8", "int8", *["text"] * 4, "int8", "int8", *["text"] * 4])
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
        cursor.execute("SELECT " + _COLUMNS.format(at="recorded_at") + where, [chain.pk, after])
        while rows := cursor.fetchmany(chunk_size):
            for row in rows:
                yield (*row[:4], _sqlite_time(row[4]), *row[5:])


# The fast walk's query, in PostgreSQL's binary COPY format. PostgreSQL checks that the
# indexed columns agree with the sealed payload (the prefix `hashchain.payload_prefix` builds,
# with the time cast rather than to_char'd) and that both hashes have 64 characters, and sends
# what the hash covers, previous hash and payload, as one value. A row is then:
#   field count (2) | 4 + flag (1) | 4 + sequence (8) | 4 + hash (64) | 4 + prev_hash + payload
# A row whose flag is false is rechecked by the row-by-row walk, whatever else it holds.
_FAST = (
    "COPY (SELECT octet_length(hash) = 64 AND octet_length(prev_hash) = 64 AND "
    "starts_with(payload, "
    '\'{{"v":{version},"chain":"{chain}","seq":\' || sequence || '
    "',\"at\":\"' || replace((recorded_at AT TIME ZONE 'UTC')::text, ' ', 'T') || "
    '\'+00:00","actor_type":"\' || actor_type || \'","actor_id":\' || '
    "coalesce(actor_user_id::text, 'null') || ',\"token_id\":' || "
    "coalesce(actor_token_id::text, 'null') || ',\"action\":\"' || action || "
    '\'","target_type":"\' || target_type || \'","target_id":"\' || target_id || '
    "'\",'), sequence, hash, prev_hash || payload{range}) TO STDOUT (FORMAT binary)"
)
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00"
_TRAILER = b"\xff\xff"
_SEQUENCE, _HASH, _PREV, _SEALED = slice(11, 19), slice(23, 87), slice(91, 155), 91
# A time whose microseconds are zero prints without them: the row is rechecked on its own.
# More such rows than this means the server prints times otherwise (DateStyle): walk as usual.
_RECHECK_LIMIT = 100


def _fast_query(chain: AuditChain, after: int) -> str:
    # The chain key is a SAFE_TOKEN (letters, digits, _.:+-): it needs no quoting.
    if not hashchain.SAFE_TOKEN.match(chain.key):
        raise ValueError(f"audit chain key {chain.key!r} is not a safe token")
    return _FAST.format(
        version=hashchain.PAYLOAD_VERSION,
        chain=chain.key,
        range=_RANGE.format(through="", order=_ORDER) % (int(chain.pk), int(after)),
    )


def _walk_postgresql(
    chain: AuditChain, remember: set[int], after: tuple[int, str]
) -> hashchain.WalkResult:
    """`hashchain.walk` on PostgreSQL at close to the speed of hashing.

    The rows come as binary COPY messages read straight from libpq: psycopg's per-row
    machinery would cost more than the hash. Each row is checked in place: its sequence, its
    link to the previous hash, its own hash, and PostgreSQL's flag. A row that fails ends the
    fast pass, and the usual walk goes over the same events again to say what is wrong (from
    the start: with the unique constraint dropped, events numbered alike may come in any order
    here). A row whose only fault is the flag is rechecked on its own after the pass (a time
    without microseconds prints without them); should the recheck fail, or find no such row,
    the usual walk goes over everything again.
    """
    sha256, hexlify = hashlib.sha256, binascii.hexlify
    seq = after[0]
    prev = after[1].encode()
    hashes: dict[int, str] = {}
    recheck: list[tuple[int, str]] = []
    stopped = False
    with connection.cursor() as cursor:
        # Walk the (chain, sequence) index, so that rows stream from the first one while this
        # side hashes; planned for its total cost, COPY would sort the whole chain first. And
        # compiling the flag's expression costs more than it saves. (Should the COPY fail, the
        # settings stay on this connection until the next walk resets them: a plan choice.)
        cursor.execute("SET enable_sort = off")
        cursor.execute("SET jit = off")
        with cursor.cursor.copy(_fast_query(chain, after[0])) as copy:
            get_copy_data = connection.connection.pgconn.get_copy_data
            data = bytes(get_copy_data(0)[1])
            if data.startswith(_BINARY_HEADER):
                data = data[19 + int.from_bytes(data[15:19]) :]
            while data != _TRAILER:
                digest = data[_HASH]
                if (
                    data[_PREV] != prev
                    or int.from_bytes(data[_SEQUENCE]) != seq + 1
                    or hexlify(sha256(data[_SEALED:]).digest()) != digest
                ):
                    stopped = True
                    break
                if data[6] != 1:
                    if len(recheck) == _RECHECK_LIMIT:
                        stopped = True
                        break
                    recheck.append((seq, prev.decode()))
                seq += 1
                prev = digest
                if seq in remember:
                    hashes[seq] = digest.decode()
                data = bytes(get_copy_data(0)[1])
            if stopped:
                # Reading the rest leaves the connection usable (see iter_rows).
                while copy.read():
                    pass
            else:
                copy.read()  # the end of the COPY: psycopg collects the command's result
        cursor.execute("RESET jit")
        cursor.execute("RESET enable_sort")
    if stopped:
        return hashchain.walk(
            chain.key, iter_rows(chain, after=after[0]), remember=remember, after=after
        )
    for point, point_hash in recheck:
        single = hashchain.walk(
            chain.key, iter_rows(chain, after=point, through=point + 1), after=(point, point_hash)
        )
        if single.problem or single.length != point + 1:
            return hashchain.walk(
                chain.key, iter_rows(chain, after=after[0]), remember=remember, after=after
            )
    return hashchain.WalkResult(chain=chain.key, length=seq, head=prev.decode(), hashes_at=hashes)


def walk_chain(
    chain: AuditChain,
    *,
    remember: Iterable[int] = (),
    after: tuple[int, str] = (0, hashchain.GENESIS_HASH),
) -> hashchain.WalkResult:
    """Walk one stored chain (from `after`, a verified (sequence, hash), to its end)."""
    wanted = set(remember)
    if connection.vendor == "postgresql":
        return _walk_postgresql(chain, wanted, after)
    return hashchain.walk(chain.key, iter_rows(chain, after=after[0]), remember=wanted, after=after)


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
    result = walk_chain(chain, remember=remember)
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


@dataclass
class LatestStatus:
    """What the timeline page says about its chain (`verify_latest`)."""

    length: int  # events of the chain, up to the head read
    recomputed: int  # of which recomputed on this view (the others were verified before)
    problem: Problem | None
    checkpoint: Checkpoint | None  # the chain's last signed checkpoint


def _verified_key(chain: AuditChain) -> str:
    return f"audits:verified:{chain.pk}:{chain.key}"


def _latest_recorded(chain: AuditChain) -> Recorded | None:
    """The last checkpoint of the chain that the global chain recorded, if any."""
    found = (
        AuditEvent.objects.filter(
            chain__key=GLOBAL_CHAIN,
            action=Action.AUDIT_CHECKPOINT,
            target_type="audits.auditchain",
            target_id=str(chain.pk),
        )
        .order_by("-sequence")
        .values_list("sequence", "payload")
        .first()
    )
    if found is None:
        return None
    try:
        after = json.loads(found[1])["after"]
        return Recorded(found[0], Checkpoint.from_record(after), after["file"])
    except (ValueError, KeyError, TypeError):
        return None  # an edited event: the walk of the global chain names it


def _forgotten(chain: AuditChain, length: int, head: str) -> Problem:
    """A point this server verified earlier that the chain no longer has: hashes never change,
    so the chain was cut or rewritten, or an older backup restored, since."""
    return Problem(
        chain.key,
        None,
        None,
        f"this server verified {length} events ending in {head[:12]}… earlier, but the chain "
        f"now has {chain.length} events and does not pass through that point: events were "
        "removed or rewritten, or an older backup was restored",
    )


def verify_latest(chain: AuditChain) -> LatestStatus:
    """The audit timeline's check of one chain, at a cost that does not grow with its length.

    It starts from the last point known good: the chain's last signed checkpoint (the whole
    chain was verified when it was written), or the head this process verified on an earlier
    view, whichever is later. The stored hash at that point must still be the one signed or
    verified (hashes never change: a point the chain no longer passes through is reported);
    the events after it are recomputed and must end at the chain head. The signed
    checkpoint is read from the end of this chain's file only, and the latest one the global
    chain recorded must be in it. Edits further back, which leave the hash at that point as it
    was, are found by the full verification: the checkpoint job (AUDIT_CHECKPOINT_INTERVAL),
    which then writes no new checkpoint and logs an error, and `manage.py verify_audit`.
    """
    # The recorded checkpoint first: its line was written before its event committed, so a
    # checkpoint recorded by now is in the file read next.
    recorded = _latest_recorded(chain)
    try:
        checkpoint = checkpoints.latest(chain.key)
    except CheckpointError as exc:
        return LatestStatus(chain.length, 0, Problem(chain.key, None, None, str(exc)), None)
    if recorded is not None and (
        checkpoint is None or recorded.checkpoint.length >= checkpoint.length
    ):
        problem = _missing(chain, [checkpoint] if checkpoint else [], [recorded])
        if problem:
            return LatestStatus(chain.length, 0, problem, checkpoint)
    cache_key = _verified_key(chain)
    cached = cache.get(cache_key)
    if max(checkpoint.length if checkpoint else 0, cached[0] if cached else 0) > chain.length:
        # Written since the head was read (by the checkpoint job, or another view's walk).
        chain.refresh_from_db(fields=["length", "head_hash"])
    anchors: dict[int, str] = {}
    if checkpoint is not None:
        if checkpoint.length > chain.length:
            problem = checkpoint_format.compare(
                chain.key, hashchain.WalkResult(chain.key, length=chain.length), [checkpoint]
            )
            return LatestStatus(chain.length, 0, problem, checkpoint)
        anchors[checkpoint.length] = checkpoint.head
    if cached and cached[0] > chain.length:
        return LatestStatus(chain.length, 0, _forgotten(chain, *cached), checkpoint)
    if cached and cached[0] not in anchors:
        anchors[cached[0]] = cached[1]
    stored = {
        sequence: (digest, prev)
        for sequence, digest, prev in AuditEvent.objects.filter(
            chain=chain, sequence__in=list(anchors)
        ).values_list("sequence", "hash", "prev_hash")
    }
    anchor, start = 0, (0, hashchain.GENESIS_HASH)
    for length, head in sorted(anchors.items()):
        if length and stored.get(length, ("", ""))[0] != head:
            if checkpoint is not None and length == checkpoint.length:
                problem = checkpoint_format.compare(
                    chain.key,
                    hashchain.WalkResult(
                        chain.key,
                        length=chain.length,
                        hashes_at={n: digest for n, (digest, _) in stored.items()},
                    ),
                    [checkpoint],
                )
            else:
                problem = _forgotten(chain, length, head)
            cache.delete(cache_key)
            return LatestStatus(chain.length, 0, problem, checkpoint)
        # The walk starts with the anchor event itself, so that an edit of its content or
        # columns, which leaves its stored hash alone, is found too.
        anchor, start = length, (length - 1, stored[length][1]) if length else start
    result = walk_chain(chain, remember={chain.length}, after=start)
    problem = result.problem
    reached = result.hashes_at.get(chain.length, hashchain.GENESIS_HASH if not chain.length else "")
    if problem is None and reached != chain.head_hash:
        problem = Problem(
            chain.key,
            None,
            None,
            f"the chain head records {chain.length} events ending in {chain.head_hash[:12]}…, "
            f"but the events end at #{result.length} ({result.head[:12]}…): the tail was "
            "deleted or rewritten",
        )
    if problem is None:
        cache.set(cache_key, (result.length, result.head), timeout=None)
    return LatestStatus(chain.length, max(0, result.length - anchor), problem, checkpoint)


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
