"""Seed sign-off policy v1, assign it to existing projects, and make signatures append-only."""

from django.db import migrations

from audits.triggers import create_sql, drop_sql

APPEND_ONLY = ["governance_signature", "governance_signatureinvalidation"]

# Roles whose approval each gate needs, by risk tier. High risk adds the compliance officer to
# every gate; low risk needs fewer specialists.
MEDIUM = {
    "planning": ["clinical_lead", "privacy_officer", "committee_chair"],
    "data": ["data_steward", "privacy_officer", "committee_chair"],
    "development": ["clinical_lead", "clinical_safety_officer", "committee_chair"],
    "deployment": ["clinical_lead", "clinical_safety_officer", "committee_chair"],
    "monitoring": ["clinical_lead", "clinical_safety_officer", "committee_chair"],
}
LOW = {
    "planning": ["privacy_officer", "committee_chair"],
    "data": ["data_steward", "committee_chair"],
    "development": ["clinical_lead", "committee_chair"],
    "deployment": ["clinical_lead", "committee_chair"],
    "monitoring": ["committee_chair"],
}
HIGH = {phase: [*roles, "compliance_officer"] for phase, roles in MEDIUM.items()}


def seed(apps, schema_editor):
    SignOffPolicy = apps.get_model("governance", "SignOffPolicy")
    SignOffRequirement = apps.get_model("governance", "SignOffRequirement")
    Project = apps.get_model("governance", "Project")
    policy, created = SignOffPolicy.objects.get_or_create(
        version="1",
        defaults={
            "name": "Default sign-off policy",
            "is_active": not SignOffPolicy.objects.filter(is_active=True).exists(),
        },
    )
    if created:
        SignOffRequirement.objects.bulk_create(
            SignOffRequirement(policy=policy, phase=phase, risk_tier=tier, role=role)
            for tier, table in (("low", LOW), ("medium", MEDIUM), ("high", HIGH))
            for phase, roles in table.items()
            for role in roles
        )
    Project.objects.filter(signoff_policy__isnull=True).update(signoff_policy=policy)


def install_triggers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for table in APPEND_ONLY:
            for statement in create_sql(schema_editor.connection.vendor, table):
                cursor.execute(statement)


def drop_triggers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for table in APPEND_ONLY:
            for statement in drop_sql(schema_editor.connection.vendor, table):
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_signoffs")]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunPython(install_triggers, drop_triggers),
    ]
