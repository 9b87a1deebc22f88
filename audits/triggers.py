"""Database triggers that make a table append-only.

SQLite: BEFORE UPDATE / BEFORE DELETE triggers that abort. PostgreSQL: a row trigger for
UPDATE and DELETE and a statement trigger for TRUNCATE, all raising an exception. A database
administrator can still drop them (the tamper tests do exactly that); the hash chain and the
checkpoints are what detect changes made meanwhile, and `missing` (run by `verify_audit` and
the checkpoint task) reports triggers that were dropped, disabled or altered.
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
                    "SELECT t.tgname, t.tgenabled, p.proname FROM pg_trigger t "
                    "JOIN pg_proc p ON p.oid = t.tgfoid "
                    "WHERE t.tgrelid = to_regclass(%s) AND NOT t.tgisinternal",
                    [table],
                )
                found = {name: (enabled, function) for name, enabled, function in cursor.fetchall()}
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
                elif vendor == "postgresql" and found[name][0] == "D":
                    problems.append(
                        f"trigger {name} on {table} is disabled: the table is no longer append-only"
                    )
                elif vendor == "postgresql" and found[name][1] != "refuse_append_only_change":
                    problems.append(
                        f"trigger {name} on {table} was altered: it calls {found[name][1]}()"
                    )
                elif vendor == "sqlite" and _normalised(found[name][1]) != _normalised(statement):
                    problems.append(
                        f"trigger {name} on {table} was altered: it no longer refuses the change"
                    )
    return problems
