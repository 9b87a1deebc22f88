"""Versioned rule sets: checklist templates and sign-off policies.

Both work the same way, so the rules live here once: a version in use (active, or kept by any
project) never changes; a change is a new version copied from an old one, edited as a draft,
and activated for new projects, with exactly one version active at a time. The template and
policy services call these steps inside their own transaction, after their permission checks.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from audits.models import Action
from audits.trail import record
from governance.models import User

# A version: a ChecklistTemplate or a SignOffPolicy (version, name, is_active, projects).
Version = Any


def in_use(version: Version) -> bool:
    """Active, or kept by a project: then it is frozen."""
    return version.is_active or version.projects.exists()


def lock_draft(model: type[models.Model], pk: Any, what: str) -> Version:
    """The version `pk`, locked, if it may still change; a ValidationError if it is in use."""
    version = model._default_manager.select_for_update().get(pk=pk)
    if in_use(version):
        raise ValidationError(
            f"{what} v{version.version} is active or used by projects and cannot change: "
            "create a new version instead."
        )
    return version


def copy_version(
    source: Version,
    *,
    actor: User,
    version: str,
    name: str,
    rows: str,
    action: Action,
    copied: tuple[str, ...] = (),
    recorded: tuple[str, ...] = ("version",),
) -> Version:
    """A new, inactive version copied from `source`: its own fields in `copied`, and every
    row of the related set `rows` (template items, policy requirements). Recorded with the
    fields in `recorded` and the version it was copied from."""
    model = type(source)
    draft = model(
        version=version.strip(),
        name=(name or source.name).strip(),
        created_by=actor,
        **{field: getattr(source, field) for field in copied},
    )
    draft.full_clean()
    draft.save()
    related = getattr(source, rows)
    parent = related.field.name
    row_model = related.model
    fields = [
        f.attname for f in row_model._meta.concrete_fields if not f.primary_key and f.name != parent
    ]
    row_model.objects.bulk_create(
        row_model(**{f: getattr(row, f) for f in fields}, **{parent: draft})
        for row in related.all()
    )
    record(
        actor=actor,
        action=action,
        project=None,
        target=draft,
        after={
            **{field: getattr(draft, field) for field in recorded},
            "copied_from": source.version,
        },
    )
    return draft


def make_sole_active(version: Version, *, actor: User, action: Action) -> None:
    """Deactivate every other version of the same kind, activate `version`, and record the
    switch (a partial unique constraint also allows only one active row)."""
    others = type(version)._default_manager.filter(is_active=True).exclude(pk=version.pk)
    previous = list(others.values_list("version", flat=True))
    others.update(is_active=False)
    version.is_active = True
    version.save(update_fields=["is_active"])
    record(
        actor=actor,
        action=action,
        project=None,
        target=version,
        before={"active": previous},
        after={"active": [version.version]},
    )
