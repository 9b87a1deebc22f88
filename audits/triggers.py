"""Database triggers that make a table append-only.

SQLite: BEFORE UPDATE / BEFORE DELETE triggers that abort. PostgreSQL: a row trigger for
UPDATE and DELETE and a statement trigger for TRUNCATE, all raising an exception. A database
administrator can still drop them (the tamper tests do exactly that); the hash chain and the
checkpoints are what detect changes made meanwhile, and `missing` (run by `verify_audit` and
the checkpoint task) reports triggers that were dropped, disabled or altered.

On PostgreSQL a trigger can be neutered without being dropped: enabled for replication
sessions only (`ENABLE REPLICA TRIGGER`), recreated with `WHEN (false)`, or on other events,
timing or level. So `missing` compares what `pg_get_triggerdef` says of each trigger with the
definition this module installs, and requires it to fire in ordinary sessions.
"""

import re

from django.db.backends.base.base import BaseDatabaseWrapper

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION refuse_append_only_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def create_sql(vendor: str, table: str) -> list[str]:
    if vendor == "postgresql":
        return [
            PG_FUNCTION,
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()",
        ]
    if vendor == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: UPDATE refused'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: DELETE refused'); END",
        ]
    raise NotImplementedError(f"append-only triggers are not written for {vendor}")


def drop_sql(vendor: str, table: str) -> list[str]:
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        ]
    if vendor == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {table}_no_update",
            f"DROP TRIGGER IF EXISTS {table}_no_delete",
        ]
    raise NotImplementedError(f"append-only triggers are not written for {vendor}")


def install(connection: BaseDatabaseWrapper, table: str) -> None:
    with connection.cursor() as cursor:
        for statement in create_sql(connection.vendor, table):
            cursor.execute(statement)


def uninstall(connection: BaseDatabaseWrapper, table: str) -> None:
    with connection.cursor() as cursor:
        for statement in drop_sql(connection.vendor, table):
            cursor.execute(statement)


APPEND_ONLY_TABLES = [
    "audits_auditevent",
    "governance_signature",
    "governance_signatureinvalidation",
]


def _normalised(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip().rstrip(";").lower()


def _pg_function_body() -> str:
    return PG_FUNCTION.split("$$")[1]


# What `pg_get_triggerdef` prints for a plain trigger. A definition that does not match at all
# (a constraint trigger, REFERENCING, DEFERRABLE) is not one this module installs.
_PG_TRIGGER = re.compile(
    r"create trigger (?P<name>\w+) (?P<timing>before|after|instead of) (?P<events>.+?) "
    r"on (?:\w+\.)?(?P<table>\w+) for each (?P<level>row|statement) "
    r"(?:when \((?P<when>.*)\) )?execute (?:function|procedure) (?:\w+\.)?(?P<function>\w+)"
    r"\((?P<arguments>.*)\)"
)
# tgenabled: 'O' fires in ordinary sessions, 'A' always; 'R' only for replication sessions
# (session_replication_role = replica), 'D' never.
_PG_FIRES = {"O", "A"}


def _pg_shape(definition: str) -> tuple[str | None, ...] | None:
    """A trigger definition as what decides when it fires: timing, events (in any order),
    table, row or statement, condition, function and arguments."""
    match = _PG_TRIGGER.fullmatch(_normalised(definition))
    if match is None:
        return None
    events = " or ".join(sorted(match["events"].split(" or ")))
    return (
        match["timing"],
        events,
        match["table"],
        match["level"],
        match["when"],
        match["function"],
        match["arguments"],
    )


def _pg_problem(name: str, table: str, found: tuple[str, str, str], expected: str) -> str | None:
    enabled, function, definition = found
    if enabled == "D":
        return f"trigger {name} on {table} is disabled: the table is no longer append-only"
    if enabled not in _PG_FIRES:
        return (
            f"trigger {name} on {table} fires only in replication sessions (ENABLE REPLICA "
            "TRIGGER): the table is no longer append-only"
        )
    if function != "refuse_append_only_change":
        return f"trigger {name} on {table} was altered: it calls {function}()"
    if _pg_shape(definition) != _pg_shape(expected):
        return (
            f'trigger {name} on {table} was altered: it is defined as "{definition}", not as '
            "installed, so it may no longer refuse the change"
        )
    return None


def missing(connection: BaseDatabaseWrapper, tables: list[str] | None = None) -> list[str]:
    """What is wrong with the append-only triggers of `tables` (all of them by default).

    Each message names the trigger and table: missing, disabled (PostgreSQL), or altered so
    that it no longer refuses the change. An empty list means every trigger is in place.
    """
    problems = []
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'refuse_append_only_change'")
            sources = [row[0] for row in cursor.fetchall()]
            if not sources:
                problems.append(
                    "function refuse_append_only_change() is missing: the tables are no "
                    "longer append-only"
                )
            elif any(_normalised(s) != _normalised(_pg_function_body()) for s in sources):
                problems.append(
                    "function refuse_append_only_change() was altered: the triggers may no "
                    "longer refuse changes"
                )
        for table in tables or APPEND_ONLY_TABLES:
            expected = {
                match.group(1): statement
                for statement in create_sql(vendor, table)
                if (match := re.match(r"CREATE TRIGGER (\w+)", statement))
            }
            if vendor == "postgresql":
                cursor.execute(
                    "SELECT t.tgname, t.tgenabled, p.proname, pg_get_triggerdef(t.oid) "
                    "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                    "WHERE t.tgrelid = to_regclass(%s) AND NOT t.tgisinternal",
                    [table],
                )
                found: dict[str, tuple[str, ...]] = {
                    row[0]: tuple(row[1:]) for row in cursor.fetchall()
                }
            else:
                cursor.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                    [table],
                )
                found = {name: ("", sql) for name, sql in cursor.fetchall()}
            for name, statement in expected.items():
                if name not in found:
                    problems.append(
                        f"trigger {name} on {table} is missing: the table is no longer "
                        "append-only (the trigger was dropped)"
                    )
                elif vendor == "postgresql":
                    enabled, function, definition = found[name]
                    problem = _pg_problem(name, table, (enabled, function, definition), statement)
                    if problem is not None:
                        problems.append(problem)
                elif _normalised(found[name][1]) != _normalised(statement):
                    problems.append(
                        f"trigger {name} on {table} was altered: it no longer refuses the change"
                    )
    return problems
