"""Load the default checklist template: the 44 considerations of Table 1, version 1.

The data lives in lifecycle/data/checklist_template_v1.json, which is frozen: a changed
template is a new version (a new file and a new migration, or the admin), never an edit.
"""

import json
from pathlib import Path

from django.db import migrations

DATA = Path(__file__).resolve().parent.parent / "data" / "checklist_template_v1.json"


def load(apps, schema_editor):
    ChecklistTemplate = apps.get_model("lifecycle", "ChecklistTemplate")
    TemplateItem = apps.get_model("lifecycle", "TemplateItem")
    data = json.loads(DATA.read_text(encoding="utf-8"))
    if ChecklistTemplate.objects.filter(version=data["version"]).exists():
        return
    template = ChecklistTemplate.objects.create(
        version=data["version"],
        name=data["name"],
        description=data["description"],
        is_active=not ChecklistTemplate.objects.filter(is_active=True).exists(),
    )
    TemplateItem.objects.bulk_create(
        TemplateItem(template=template, position=position, **item)
        for position, item in enumerate(data["items"], start=1)
    )


def unload(apps, schema_editor):
    ChecklistTemplate = apps.get_model("lifecycle", "ChecklistTemplate")
    data = json.loads(DATA.read_text(encoding="utf-8"))
    ChecklistTemplate.objects.filter(version=data["version"], projects__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0001_initial")]

    operations = [migrations.RunPython(load, unload)]
