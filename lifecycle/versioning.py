"""Versioned rule sets (checklist templates, sign-off policies): one version is active for new
projects at a time. The services that activate a version call this inside their transaction,
after their own permission and completeness checks."""

from django.db.models import Model

from audits.models import Action
from audits.trail import record
from governance.models import User


def make_sole_active(version: Model, *, actor: User, action: Action) -> None:
    """Deactivate every other version of the same kind, activate `version`, and record the
    switch (a partial unique constraint also allows only one active row)."""
    others = type(version).objects.filter(is_active=True).exclude(pk=version.pk)
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
