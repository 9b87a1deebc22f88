"""The hash chain itself: payload format, sealing and verification.

Plain Python with no Django imports, so that an exported chain can be verified offline, by
this module or by anyone re-implementing the few lines below:

    payload = canonical JSON object, keys in the order of `build_payload`
    hash    = SHA-256( previous event's hash as 64 lower-case hex characters
                       + payload as UTF-8 )
    the first event of a chain follows GENESIS_HASH (64 zeros)

The first keys of the payload repeat the columns that the database indexes (chain, sequence,
time, actor, action, target). They hold only characters that JSON never escapes, so the
verifier can rebuild that prefix from the columns with string formatting and prove the
columns agree with the sealed payload without parsing it.
"""

import binascii
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
GLOBAL_CHAIN = "global"
PAYLOAD_VERSION = 1
SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:+\-]*$")

# (id, sequence, prev_hash, hash, recorded_at ISO, actor_type, actor_id, token_id, action,
#  target_type, target_id, payload): what verification reads for each event, in this order.
Row = tuple[Any, int, str, str, str, str, int | None, int | None, str, str, str, str]


def format_time(moment: datetime) -> str:
    """UTC, always with microseconds, so the same instant always formats the same way."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def payload_prefix(
    chain: str,
    sequence: int,
    at: str,
    actor_type: str,
    actor_id: int | None,
    token_id: int | None,
    action: str,
    target_type: str,
    target_id: str,
) -> str:
    """The payload's leading keys, rebuilt from the indexed columns."""
    return (
        f'{{"v":{PAYLOAD_VERSION},"chain":"{chain}","seq":{sequence},"at":"{at}",'
        f'"actor_type":"{actor_type}","actor_id":{_json_int(actor_id)},'
        f'"token_id":{_json_int(token_id)},"action":"{action}",'
        f'"target_type":"{target_type}","target_id":"{target_id}",'
    )


def build_payload(
    *,
    chain: str,
    sequence: int,
    at: str,
    actor_type: str,
    actor_id: int | None,
    token_id: int | None,
    action: str,
    target_type: str,
    target_id: str,
    actor_name: str,
    target_text: str,
    before: Any,
    after: Any,
    reason: str,
    request_id: str,
    ip: str | None,
    user_agent: str,
) -> str:
    """Serialise an event canonically; refuses indexed values that JSON would escape."""
    for name, value in (
        ("chain", chain),
        ("at", at),
        ("actor_type", actor_type),
        ("action", action),
        ("target_type", target_type),
        ("target_id", target_id),
    ):
        if not SAFE_TOKEN.match(value):
            raise ValueError(f"audit {name} {value!r} may only hold letters, digits and _.:+-")
    rest = json.dumps(
        {
            "actor_name": actor_name,
            "target_text": target_text,
            "before": before,
            "after": after,
            "reason": reason,
            "request_id": request_id,
            "ip": ip,
            "user_agent": user_agent,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=False,
        allow_nan=False,
    )
    prefix = payload_prefix(
        chain, sequence, at, actor_type, actor_id, token_id, action, target_type, target_id
    )
    return prefix + rest[1:]


def seal(prev_hash: str, payload: str) -> str:
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain, said so that an auditor can act on it."""

    chain: str
    sequence: int | None
    event_id: Any
    message: str
    where: str | None = None  # what is wrong when it is no event of the chain (the triggers)

    def __str__(self) -> str:
        where = f"event #{self.sequence}" if self.sequence is not None else "chain"
        if self.event_id is not None:
            where += f" (id {self.event_id})"
        return f"{self.chain}: {self.where or where}: {self.message}"


@dataclass
class WalkResult:
    """How far a chain verified, and the first problem if any."""

    chain: str
    length: int = 0
    head: str = GENESIS_HASH
    problem: Problem | None = None
    hashes_at: dict[int, str] = field(default_factory=dict)


def walk(
    chain: str,
    rows: Iterable[Row],
    *,
    remember: Iterable[int] = (),
    after: tuple[int, str] = (0, GENESIS_HASH),
) -> WalkResult:
    """Verify the rows of one chain in stored order; stop at the first problem.

    `remember` lists sequence numbers whose hashes the caller wants back (the checkpoints).
    `after` is the point already verified that the rows continue: (sequence, its hash).
    """
    wanted = set(remember)
    result = WalkResult(chain=chain)
    expected_seq = after[0] + 1
    prev = after[1]
    prefix = payload_prefix
    for row in rows:
        event_id, seq, prev_col, stored, at, atype, aid, tid, action, ttype, target, payload = row
        if seq != expected_seq:
            if seq < expected_seq:
                message = (
                    f"sequence {seq} appears again after #{expected_seq - 1}: a forked chain or "
                    "an inserted event"
                )
            else:
                message = (
                    f"sequence jumps from #{expected_seq - 1} to #{seq}: "
                    f"{seq - expected_seq} event(s) deleted"
                )
            result.problem = Problem(chain, seq, event_id, message)
            return result
        if prev_col != prev:
            result.problem = Problem(
                chain,
                seq,
                event_id,
                f"does not follow event #{seq - 1}: its previous-hash differs from that "
                f"event's hash, so event #{seq - 1} was altered, or events were removed, "
                "inserted or reordered here",
            )
            return result
        if seal(prev_col, payload) != stored:
            result.problem = Problem(
                chain, seq, event_id, "content does not match its hash: the event was edited"
            )
            return result
        if not payload.startswith(prefix(chain, seq, at, atype, aid, tid, action, ttype, target)):
            result.problem = Problem(
                chain,
                seq,
                event_id,
                "its indexed columns (time, actor, action or target) differ from the sealed "
                "content: the event was edited",
            )
            return result
        if seq in wanted:
            result.hashes_at[seq] = stored
        prev = stored
        expected_seq += 1
    result.length = expected_seq - 1
    result.head = prev
    return result


# --- Export files -------------------------------------------------------------------------

EXPORT_FORMAT = "llm-governance-audit-export"


def export_header(chain: str, length: int, head: str, exported_at: str) -> str:
    return json.dumps(
        {
            "format": EXPORT_FORMAT,
            "version": PAYLOAD_VERSION,
            "chain": chain,
            "length": length,
            "head": head,
            "exported_at": exported_at,
        },
        separators=(",", ":"),
    )


def export_line(prev_hash: str, stored_hash: str, payload: str) -> str:
    """One event per line: valid JSON whose "event" member is the sealed payload verbatim."""
    return f'{{"hash":"{stored_hash}","prev":"{prev_hash}","event":{payload}}}'


_LINE_HEAD = len('{"hash":"') + 64 + len('","prev":"') + 64 + len('","event":')


_PREFIX = re.compile(
    r'\{"v":\d+,"chain":"[^"]*","seq":(\d+),"at":"([^"]*)","actor_type":"([^"]*)",'
    r'"actor_id":(null|\d+),"token_id":(null|\d+),"action":"([^"]*)",'
    r'"target_type":"([^"]*)","target_id":"([^"]*)",'
)


def _int_or_none(text: str) -> int | None:
    return None if text == "null" else int(text)


def rows_from_export(lines: Iterable[str], start: int = 2) -> Iterator[Row]:
    """Turn export lines back into verification rows, reading the indexed values out of
    the sealed payload itself (the file has no separate columns to disagree with it).
    `start` is the line number of the first line (the header is line 1)."""
    for number, line in enumerate(lines, start=start):
        line = line.rstrip("\n")
        if not line:
            continue
        if not (line.startswith('{"hash":"') and line.endswith("}")):
            raise ValueError(f"line {number}: not an audit export event line")
        payload = line[_LINE_HEAD:-1]
        match = _PREFIX.match(payload)
        if match is None:
            raise ValueError(f"line {number}: the event does not start like an audit payload")
        seq, at, actor_type, actor_id, token_id, action, target_type, target_id = match.groups()
        yield (
            f"line {number}",
            int(seq),
            line[83:147],
            line[9:73],
            at,
            actor_type,
            _int_or_none(actor_id),
            _int_or_none(token_id),
            action,
            target_type,
            target_id,
            payload,
        )


def _decoded(lines: Iterable[bytes], start: int) -> Iterator[str]:
    for number, line in enumerate(lines, start=start):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"line {number}: not UTF-8 text") from None


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def walk_export(chain: str, lines: Iterator[bytes], *, remember: Iterable[int] = ()) -> WalkResult:
    """`walk` over the event lines of an export (as bytes), as fast as hashing allows.

    A line carries everything the walk checks in its own bytes, so the usual line is checked
    in place: its fixed layout, its link, its sequence, its hash, UTF-8. The first line that is
    not that usual line, and every line after it, go through `rows_from_export` and `walk`, which
    say exactly what is wrong (or accept an unusual but sound line, such as an empty one). The
    payload's fields after its time are sealed content that neither pass needs to read.
    """
    wanted = set(remember)
    hashes: dict[int, str] = {}
    sha256, hexlify = hashlib.sha256, binascii.hexlify
    # Everything up to the payload's time, checked with one comparison a line. The chain key
    # is a SAFE_TOKEN (verify_export checks), so it holds no % to upset the formatting.
    expected = (
        b'{"hash":"%s","prev":"%s","event":{"v":%d,"chain":"'
        + chain.encode()
        + b'","seq":%d,"at":"'
    )
    prev = GENESIS_HASH.encode()
    seq = 0
    for line in lines:
        end = -2 if line.endswith(b"}\n") else -1 if line.endswith(b"}") else 0
        if not (
            end
            and (line.isascii() or _is_utf8(line))
            and line.startswith(
                expected
                % (
                    hexlify(sha256(prev + line[_LINE_HEAD:end]).digest()),
                    prev,
                    PAYLOAD_VERSION,
                    seq + 1,
                )
            )
        ):
            rest = itertools.chain([line], lines)
            result = walk(
                chain,
                rows_from_export(_decoded(rest, seq + 2), start=seq + 2),
                remember=wanted,
                after=(seq, prev.decode()),
            )
            result.hashes_at.update(hashes)
            return result
        seq += 1
        prev = line[9:73]
        if seq in wanted:
            hashes[seq] = prev.decode()
    return WalkResult(chain=chain, length=seq, head=prev.decode(), hashes_at=hashes)


def verify_export(
    lines: Iterable[bytes] | Iterable[str], *, remember: Iterable[int] = ()
) -> tuple[dict, WalkResult]:
    """Verify an export file offline: the chain, and that it ends where its header says.

    `lines` as bytes (a file opened "rb", the fast way) or text. `remember` as for `walk` (the
    lengths of checkpoints to compare the export with)."""
    iterator: Iterator[Any] = iter(lines)
    try:
        first = next(iterator)
        header = json.loads(first)
    except (StopIteration, ValueError, RecursionError):
        raise ValueError("line 1: not an audit export header") from None
    if isinstance(first, str):
        iterator = (line.encode() for line in iterator)
    if not isinstance(header, dict):
        raise ValueError("line 1: not an audit export header")
    if header.get("format") != EXPORT_FORMAT:
        raise ValueError(f"line 1: format is {header.get('format')!r}, not {EXPORT_FORMAT!r}")
    chain, length, head = header.get("chain"), header.get("length"), header.get("head")
    if not (isinstance(chain, str) and SAFE_TOKEN.match(chain) and chain):
        raise ValueError("line 1: the header's chain is not an audit chain key")
    if not (isinstance(length, int) and isinstance(head, str)):
        raise ValueError("line 1: the header's length or head is missing or malformed")
    result = walk_export(chain, iterator, remember=remember)
    if result.problem is None and (result.length, result.head) != (
        header["length"],
        header["head"],
    ):
        result.problem = Problem(
            chain,
            None,
            None,
            f"the header promises {header['length']} events ending in {header['head'][:12]}…, "
            f"but the file holds {result.length} ending in {result.head[:12]}…: events were "
            "removed from or added to the end of the file",
        )
    return header, result
