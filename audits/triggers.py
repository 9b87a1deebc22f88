"""Database triggers that make a table append-only.

SQLite: BEFORE UPDATE / BEFORE DELETE triggers that abort. PostgreSQL: a row trigger for
UPDATE and DELETE and a statement trigger for TRUNCATE, all raising an exception. A database
administrator can still drop them (the tamper tests do exactly that); the hash chain and the
checkpoints are what detect such changes.
"""

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
