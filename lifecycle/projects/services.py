"""Writes about projects: registration (which starts the lifecycle: checklist and five
gates), changes to a project's details (which may invalidate signatures) and its model facts
(what the CHAI card and the HTI-1 source attributes need, `lifecycle.projects.facts`)."""

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audits.models import Action
from audits.trail import changed, record, snapshot
from governance.models import Membership, Project, User
from governance.permissions import (
    require_global_perm,
    require_project_perm,
    sync_member_permissions,
)
from governance.roles import Role
from lifecycle.checklists.selectors import active_template
from lifecycle.checklists.services import checklist_instantiate
from lifecycle.gates import signoffs
from lifecycle.gates.selectors import active_signoff_policy
from lifecycle.projects.facts import FACTS_BY_KEY, MAX_FACT_LENGTH
from lifecycle.projects.models import ModelFacts

PROJECT_EDITABLE_FIELDS = (
    "name",
    "description",
    "clinical_setting",
    "intended_use",
    "intended_users",
    "task_category",
    "risk_tier",
)


@transaction.atomic
def project_create(
    *,
    actor: User,
    name: str,
    slug: str,
    clinical_setting: str,
    intended_use: str,
    intended_users: str,
    task_category: str,
    risk_tier: str,
    description: str = "",
) -> Project:
    """Register a project: its checklist from the active template, five gates with only
    Planning open, and the creator as owner and project lead."""

    require_global_perm(actor, "governance.add_project", "register projects")
    template = active_template()
    policy = active_signoff_policy()
    project = Project(
        name=name,
        slug=slug,
        description=description,
        owner=actor,
        clinical_setting=clinical_setting,
        intended_use=intended_use,
        intended_users=intended_users,
        task_category=task_category,
        risk_tier=risk_tier,
        checklist_template=template,
        signoff_policy=policy,
    )
    project.full_clean()
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError:
        # A concurrent registration took the slug between validation and insert.
        raise ValidationError(
            {"slug": f"A project with the slug “{slug}” already exists."}
        ) from None
    Membership.objects.create(project=project, user=actor, role=Role.PROJECT_LEAD, added_by=actor)
    sync_member_permissions(project, actor)
    checklist_instantiate(project=project)
    record(
        actor=actor,
        action=Action.PROJECT_CREATE,
        project=project,
        target=project,
        after={
            **snapshot(project, ("slug", *PROJECT_EDITABLE_FIELDS, "owner")),
            "checklist_template": template.version,
            "signoff_policy": policy.version,
            "checklist_items": project.checklist_items.count(),
            "project_lead": actor.pk,
        },
    )
    return project


@transaction.atomic
def project_update(*, actor: User, project: Project, **changes: Any) -> Project:
    """Change a project's descriptive fields, its task category or its risk tier."""
    require_project_perm(actor, "change_project", project)
    unknown = set(changes) - set(PROJECT_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(
            {field: "This field cannot be changed after registration." for field in unknown}
        )
    project = Project.objects.select_for_update().get(pk=project.pk)
    before = snapshot(project, changes)
    for field, value in changes.items():
        setattr(project, field, value)
    project.full_clean()
    project.save()
    before, after = changed(before, snapshot(project, changes))
    # A new risk tier changes which roles must approve, so the gates' signatures may no longer hold.
    stale = {gate: signoffs.stale_signatures(gate) for gate in project.gates.all()}
    invalidated = [s.pk for signatures in stale.values() for s in signatures]
    event = record(
        actor=actor,
        action=Action.PROJECT_UPDATE,
        project=project,
        target=project,
        before=before,
        after={**after, **({"invalidated_signatures": invalidated} if invalidated else {})},
    )
    cause = "project details changed: " + ", ".join(sorted(after))
    for gate, signatures in stale.items():
        signoffs.invalidate(gate=gate, stale=signatures, event=event, actor=actor, cause=cause)
    return project


NUL = "\x00"


@transaction.atomic
def model_facts_update(
    *, actor: User, project: Project, changes: dict[str, str], reason: str = ""
) -> ModelFacts:
    """Change some of the project's model facts (`lifecycle.projects.facts.FACTS`).

    `changes` maps fact keys to their new text, stored stripped and with plain line feeds (a
    browser sends CR LF); a blank value clears the fact, which is then missing again. Facts
    not named keep their value, so two people editing different facts do not overwrite each
    other. Only the facts whose value changes are written, in one audit event with their old
    and new values ("" for a blank fact) and the reason; when nothing changes, nothing is
    written and no event recorded (the returned row is then unsaved if the project never had
    facts).
    """
    require_project_perm(actor, "change_project", project)
    wanted = _checked_facts(changes)
    if NUL in reason or _UNPRINTABLE.search(reason):
        raise ValidationError(
            {"reason": "The reason contains a control character, which is not allowed."}
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError(
            {"reason": f"The reason is {len(reason):,} characters; at most {MAX_REASON_LENGTH:,}."}
        )
    # The project's row serialises every change of its facts, also the very first one, when
    # there is no facts row to lock yet.
    Project.objects.select_for_update().only("pk").get(pk=project.pk)
    row = ModelFacts.objects.select_for_update().filter(project=project).first()
    stored: dict[str, Any] = dict(row.facts) if row is not None else {}
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for key, value in wanted.items():
        old = str(stored.get(key) or "")
        if value != old:
            before[key], after[key] = old, value
    if not after:
        return row if row is not None else ModelFacts(project=project, facts={})
    for key, value in after.items():
        if value:
            stored[key] = value
        else:
            stored.pop(key, None)  # a blank fact is missing: not stored at all
    if row is None:
        row = ModelFacts(project=project)
    row.facts = stored
    row.updated_by = actor
    row.save()
    record(
        actor=actor,
        action=Action.MODEL_FACTS_UPDATE,
        project=project,
        target=row,
        before=before,
        after=after,
        reason=reason.strip(),
    )
    return row


def _checked_facts(changes: dict[str, str]) -> dict[str, str]:
    """The changes with each value stripped, or a ValidationError naming each refused fact:
    an unknown key, a value that is not text, holds a NUL or is too long."""
    unknown = sorted(str(key) for key in changes if key not in FACTS_BY_KEY)
    if unknown:
        raise ValidationError({"facts": "No such model fact: " + ", ".join(unknown) + "."})
    errors: dict[str, str] = {}
    checked: dict[str, str] = {}
    for key, value in changes.items():
        label = FACTS_BY_KEY[key].label
        if not isinstance(value, str):
            errors[key] = f"“{label}” must be text."
        elif NUL in value:
            errors[key] = f"“{label}” contains a NUL character, which is not allowed."
        elif (bad := _UNPRINTABLE.search(value)) is not None:
            # Control characters and lone surrogates cannot be printed in a PDF, written in
            # the CHAI card's XML, or encoded in the audit trail.
            errors[key] = (
                f"“{label}” contains the character U+{ord(bad.group()):04X}, which cannot be "
                "printed or exported."
            )
        elif len(_plain(value)) > MAX_FACT_LENGTH:
            errors[key] = (
                f"“{label}” is {len(_plain(value)):,} characters long; "
                f"at most {MAX_FACT_LENGTH:,} are allowed."
            )
        else:
            checked[key] = _plain(value)
    if errors:
        raise ValidationError(errors)
    return checked


# Every C0 control but tab, line feed and carriage return; DEL; lone UTF-16 surrogates.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
MAX_REASON_LENGTH = 2_000


def _plain(value: str) -> str:
    """The text as stored: stripped, every line break a line feed."""
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()
