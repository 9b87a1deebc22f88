"""What a database administrator could do to the audit table, done with plain SQL.

Each function changes stored events of one chain the way an attacker with full database access
would: the append-only triggers and the unique constraints are dropped first
(`strip_protections`), as they could be.
"""

import re

from django.db import connection

from audits.chain import seal
from audits.models import AuditChain, AuditEvent

TABLE = AuditEvent._meta.db_table


def strip_protections() -> None:
    """Drop the append-only triggers and every unique constraint on the event table."""
    from audits.triggers import uninstall

    uninstall(connection, TABLE)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks of this transaction would block ALTER TABLE.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'",
                [TABLE],
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f'ALTER TABLE {TABLE} DROP CONSTRAINT "{name}"')
            return
        # SQLite cannot drop a table constraint: rebuild the table without them, as a DBA would.
        cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [TABLE])
        (create,) = cursor.fetchone()
        create = re.sub(r', CONSTRAINT "[^"]+" UNIQUE \([^)]*\)', "", create)
        create = create.replace(" NOT NULL UNIQUE", " NOT NULL")
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_old")
        cursor.execute(create)
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {TABLE}_old")
        cursor.execute(f"DROP TABLE {TABLE}_old")


def trigger_names(table: str = TABLE) -> list[str]:
    """The append-only triggers that migrations install on `table`, on this database."""
    from audits.triggers import create_sql

    return [
        match.group(1)
        for statement in create_sql(connection.vendor, table)
        if (match := re.match(r"CREATE TRIGGER (\w+)", statement))
    ]


def drop_trigger(name: str, table: str) -> None:
    """Drop one append-only trigger, and nothing else, as an administrator could."""
    if connection.vendor == "postgresql":
        _sql(f"DROP TRIGGER {name} ON {table}", [])
    else:
        _sql(f"DROP TRIGGER {name}", [])


def events(chain: AuditChain):
    return AuditEvent.objects.filter(chain=chain).order_by("sequence", "id")


def event_at(chain: AuditChain, sequence: int) -> AuditEvent:
    return AuditEvent.objects.get(chain=chain, sequence=sequence)


def _sql(statement: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def edit_payload(chain, k: int) -> None:
    """Change what event k says (the actor's name), leaving its hash alone."""
    event = event_at(chain, k)
    forged = event.payload.replace('"actor_name":"', '"actor_name":"Mallory ', 1)
    _sql(f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [forged, event.id])


def edit_column(chain, k: int) -> None:
    """Change an indexed column (the action) so filtered views lie, payload untouched."""
    event = event_at(chain, k)
    _sql(f"UPDATE {TABLE} SET action = %s WHERE id = %s", ["comment.add", event.id])
    if event.action == "comment.add":
        _sql(f"UPDATE {TABLE} SET action = %s WHERE id = %s", ["gate.approve", event.id])


def edit_and_reseal(chain, k: int) -> None:
    """Change event k and recompute its own hash so that it verifies on its own."""
    event = event_at(chain, k)
    forged = event.payload.replace('"reason":"', '"reason":"backdated ', 1)
    _sql(
        f"UPDATE {TABLE} SET payload = %s, hash = %s WHERE id = %s",
        [forged, seal(event.prev_hash, forged), event.id],
    )


def delete(chain, k: int) -> None:
    _sql(f"DELETE FROM {TABLE} WHERE id = %s", [event_at(chain, k).id])


def insert_after(chain, k: int) -> None:
    """Slip a well-formed, correctly sealed event in after event k, renumbering the rest."""
    before = event_at(chain, k)
    _sql(
        f"UPDATE {TABLE} SET sequence = sequence + 1 WHERE chain_id = %s AND sequence > %s",
        [chain.id, k],
    )
    payload = before.payload.replace(f'"seq":{k},', f'"seq":{k + 1},', 1).replace(
        '"reason":"', '"reason":"inserted ', 1
    )
    _insert_row(chain, before, k + 1, payload, before.hash)


def _insert_row(chain, model: AuditEvent, sequence: int, payload: str, prev: str) -> None:
    _sql(
        f"INSERT INTO {TABLE} (chain_id, sequence, recorded_at, actor_type, actor_user_id, "
        "actor_token_id, action, target_type, target_id, payload, prev_hash, hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            chain.id,
            sequence,
            model.recorded_at,
            model.actor_type,
            model.actor_user_id,
            model.actor_token_id,
            model.action,
            model.target_type,
            model.target_id,
            payload,
            prev,
            seal(prev, payload),
        ],
    )


def swap_positions(chain, k: int, j: int) -> None:
    """Exchange the places of events k and j (j == k + 1 is a reorder)."""
    first, second = event_at(chain, k), event_at(chain, j)
    _sql(f"UPDATE {TABLE} SET sequence = %s WHERE id = %s", [10**9, first.id])
    _sql(f"UPDATE {TABLE} SET sequence = %s WHERE id = %s", [k, second.id])
    _sql(f"UPDATE {TABLE} SET sequence = %s WHERE id = %s", [j, first.id])


def fork_at(chain, k: int) -> None:
    """Add a second, correctly sealed event k that follows event k - 1 (a branch)."""
    original = event_at(chain, k)
    payload = original.payload.replace('"reason":"', '"reason":"alternative history ', 1)
    _insert_row(chain, original, k, payload, original.prev_hash)


def rewrite_from(chain, k: int) -> None:
    """Edit event k and re-seal every later event and the chain head: the chain is internally
    consistent again, so only a checkpoint taken earlier can tell."""
    prev = event_at(chain, k).prev_hash
    for event in events(chain).filter(sequence__gte=k):
        payload = event.payload
        if event.sequence == k:
            payload = payload.replace('"reason":"', '"reason":"rewritten ', 1)
        digest = seal(prev, payload)
        _sql(
            f"UPDATE {TABLE} SET payload = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [payload, prev, digest, event.id],
        )
        prev = digest
    AuditChain.objects.filter(pk=chain.pk).update(head_hash=prev)


def truncate_tail(chain, keep: int) -> None:
    """Delete every event after `keep` and make the chain head agree."""
    _sql(f"DELETE FROM {TABLE} WHERE chain_id = %s AND sequence > %s", [chain.id, keep])
    head = event_at(chain, keep).hash if keep else "0" * 64
    AuditChain.objects.filter(pk=chain.pk).update(length=keep, head_hash=head)
