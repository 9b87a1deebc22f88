"""Audit trail benchmark: append rate and verification throughput on PostgreSQL.

    DATABASE_URL=postgres://... SECRET_KEY=bench python benchmarks/audit.py [--events N]

Creates a throwaway database (test_<name>), migrates it, measures, and drops it. Prints numbers;
asserts nothing about time. Goals: at least 1,000 appends per second with four writers, on one
chain and on four, with no fork; verification of 1,000,000 events at least half as fast as raw
hashlib.sha256 over the same bytes, from PostgreSQL and from an export file.
"""

import argparse
import hashlib
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from audits import chain as hashchain  # noqa: E402
from audits.chain import GLOBAL_CHAIN  # noqa: E402
from audits.models import AuditChain, AuditEvent  # noqa: E402
from audits.trail import record  # noqa: E402
from audits.verification import iter_rows, verify_chain, walk_chain  # noqa: E402


@dataclass(frozen=True)
class Owner:
    """What the trail needs of a project (`audits.trail.ChainOwner`): its chain is
    `project:<slug>`. The benchmark's chains exist beforehand, so no project row is needed."""

    slug: str
    pk: int | None = None


def chain_owner(key: str) -> Owner | None:
    return None if key == GLOBAL_CHAIN else Owner(key.removeprefix("project:"))


def append(count: int, key: str, barrier=None) -> None:
    """Append `count` events to chain `key`, one transaction each, like real services do."""
    connection.close()  # a forked child must not share the parent's connection
    owner = chain_owner(key)
    if barrier is not None:
        barrier.wait()
    for i in range(count):
        with transaction.atomic():
            record(
                actor=None,
                action="comment.add",
                project=owner,
                target_type="lifecycle.comment",
                target_id=i,
                target_text="Benchmark comment",
                after={"body": "Reviewed the subgroup table; calibration looks fine."},
            )
    connection.close()


def forks(keys: list[str]) -> int:
    """Events that share a sequence number with another event of their chain, plus chains
    that no longer verify: both 0 when concurrent appends were serialised."""
    found = 0
    for key in set(keys):
        chain = AuditChain.objects.get(key=key)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) - count(DISTINCT sequence) FROM audits_auditevent "
                "WHERE chain_id = %s",
                [chain.pk],
            )
            found += cursor.fetchone()[0]
        found += walk_chain(chain).problem is not None
    return found


def appends_per_second(writers: int, per_writer: int, *, same_chain: bool) -> tuple[float, int]:
    """Events per second with `writers` processes appending at once, and the forks found."""
    barrier = multiprocessing.Barrier(writers + 1)
    keys = (
        [GLOBAL_CHAIN] * writers if same_chain else [f"project:bench-{n}" for n in range(writers)]
    )
    for key in keys:
        AuditChain.objects.get_or_create(key=key)
    connection.close()
    processes = [
        multiprocessing.Process(target=append, args=(per_writer, key, barrier)) for key in keys
    ]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    for process in processes:
        process.join()
        assert process.exitcode == 0, "a writer failed"
    rate = writers * per_writer / (time.perf_counter() - started)
    for key in set(keys):
        events = AuditEvent.objects.filter(chain__key=key).count()
        assert events >= per_writer * keys.count(key), f"{key}: events went missing"
    return rate, forks(keys)


def generate_chain(key: str, events: int) -> list[bytes]:
    """Write a genuine chain of `events` events with COPY; return the bytes each hash covers."""
    chain = AuditChain.objects.create(key=key)
    sealed: list[bytes] = []
    prev = hashchain.GENESIS_HASH
    now = timezone.now()
    at = hashchain.format_time(now)
    columns = (
        "chain_id, sequence, recorded_at, actor_type, actor_user_id, actor_token_id, action, "
        "target_type, target_id, payload, prev_hash, hash"
    )
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY audits_auditevent ({columns}) FROM STDIN") as copy,
    ):
        for seq in range(1, events + 1):
            payload = hashchain.build_payload(
                chain=key,
                sequence=seq,
                at=at,
                actor_type="user",
                actor_id=1,
                token_id=None,
                action="checklist_item.update",
                target_type="lifecycle.checklistitem",
                target_id=str(seq % 5000),
                actor_name="Robert Alvarez",
                target_text="Define the clinical scope and target tasks",
                before={"status": "in_progress"},
                after={"status": "done"},
                reason="",
                request_id="3f2a9c1e-6b7d-4e0f-9a8b-1c2d3e4f5a6b",
                ip="10.1.2.3",
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
            )
            data = (prev + payload).encode()
            digest = hashlib.sha256(data).hexdigest()
            sealed.append(data)
            copy.write_row(
                (
                    chain.id,
                    seq,
                    now,
                    "user",
                    1,
                    None,
                    "checklist_item.update",
                    "lifecycle.checklistitem",
                    str(seq % 5000),
                    payload,
                    prev,
                    digest,
                )
            )
            prev = digest
    AuditChain.objects.filter(pk=chain.pk).update(length=events, head_hash=prev)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audits_auditevent")  # as autovacuum would after a bulk load
    return sealed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=1000, help="appends per writer")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL server: the benchmark measures PostgreSQL.")

    original = settings.DATABASES["default"]["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    multiprocessing.set_start_method("fork")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            sync = cursor.fetchone()[0]
            cursor.execute("SHOW fsync")
            fsync = cursor.fetchone()[0]
        print(f"PostgreSQL {connection.pg_version}, fsync={fsync}, synchronous_commit={sync}")
        print(f"cores: {os.cpu_count()}")
        print()
        print("Appends (one transaction per event, chain head row-locked):")
        for label, writers, same_chain in (
            ("1 writer", 1, True),
            ("4 writers, one shared chain", 4, True),
            ("4 writers, four chains", 4, False),
        ):
            rate, forked = appends_per_second(writers, args.appends, same_chain=same_chain)
            print(f"  {label:<30} : {rate:8,.0f} events/s, forks: {forked}")
        print("  goal: >= 1,000 events/s with four writers, on one chain and on four; 0 forks")
        print()

        print(f"Generating a chain of {args.events:,} events ...", flush=True)
        sealed = generate_chain("bench:verify", args.events)
        total_bytes = sum(len(b) for b in sealed)
        started = time.perf_counter()
        for data in sealed:
            hashlib.sha256(data).hexdigest()
        raw = time.perf_counter() - started
        del sealed

        chain = AuditChain.objects.get(key="bench:verify")
        started = time.perf_counter()
        result, problem = verify_chain(chain)
        database = time.perf_counter() - started
        assert problem is None and result.length == args.events, problem
        started = time.perf_counter()
        slow = hashchain.walk(chain.key, iter_rows(chain))
        row_by_row = time.perf_counter() - started
        assert slow.problem is None and slow.length == args.events, slow.problem

        with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", encoding="utf-8") as export:
            export.write(hashchain.export_header(chain.key, chain.length, chain.head_hash, ""))
            export.write("\n")
            for row in iter_rows(chain):
                export.write(hashchain.export_line(row[2], row[3], row[11]) + "\n")
            export.flush()
            # As `verify_audit --file` reads it: the file's bytes, from the start.
            with open(export.name, "rb") as handle:
                started = time.perf_counter()
                _, file_result = hashchain.verify_export(handle)
                offline = time.perf_counter() - started
            assert file_result.problem is None and file_result.length == args.events

        n = args.events
        print(f"Verification of {n:,} events ({total_bytes / n:.0f} bytes hashed per event):")
        print(f"  raw hashlib.sha256, same bytes : {n / raw:10,.0f} events/s  ({raw:.2f} s)")
        print(
            f"  verify from PostgreSQL         : {n / database:10,.0f} events/s  "
            f"({database:.2f} s)  ratio {raw / database:.2f}"
        )
        print(
            f"  verify an export file offline  : {n / offline:10,.0f} events/s  "
            f"({offline:.2f} s)  ratio {raw / offline:.2f}"
        )
        print(
            f"  row by row (names a problem)   : {n / row_by_row:10,.0f} events/s  "
            f"({row_by_row:.2f} s)  ratio {raw / row_by_row:.2f}  (informational: the walk "
            "verification falls back to when a row fails)"
        )
        print("  goal: ratio >= 0.50 (verification at least half the raw hashing rate)")
    finally:
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    main()
