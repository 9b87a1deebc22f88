"""Writes about projects: registration (which starts the lifecycle: checklist and five
gates) and changes to a project's details (which may invalidate signatures)."""

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
