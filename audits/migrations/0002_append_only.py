"""Make audit events append-only in the database and create the global chain."""

from django.db import migrations

from audits.triggers import create_sql, drop_sql

TABLE = "audits_auditevent"


def install(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for statement in create_sql(schema_editor.connection.vendor, TABLE):
            cursor.execute(statement)


def uninstall(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for statement in drop_sql(schema_editor.connection.vendor, TABLE):
            cursor.execute(statement)


def create_global_chain(apps, schema_editor):
    AuditChain = apps.get_model("audits", "AuditChain")
    AuditChain.objects.get_or_create(key="global")


class Migration(migrations.Migration):
    dependencies = [("audits", "0001_initial")]

    operations = [
        migrations.RunPython(install, uninstall),
        migrations.RunPython(create_global_chain, migrations.RunPython.noop),
    ]
