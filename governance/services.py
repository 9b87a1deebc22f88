"""Writes about projects and who works on them.

Every function takes the acting user, checks permission, validates, and changes the data in
one transaction; a refused call changes nothing.
"""

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from governance.models import Membership, Project, User
from governance.permissions import require_project_perm, sync_member_permissions
from governance.roles import Role
from lifecycle.selectors import active_template
from lifecycle.services import checklist_instantiate

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

    if not actor.is_active or not actor.has_perm("governance.add_project"):
        raise PermissionDenied("You are not allowed to register projects.")
    template = active_template()
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
    for field, value in changes.items():
        setattr(project, field, value)
    project.full_clean()
    project.save()
    return project


@transaction.atomic
def membership_add(*, actor: User, project: Project, user: User, role: str) -> Membership:
    """Give `user` a role on `project` and grant the role's object permissions."""
    require_project_perm(actor, "manage_members", project)
    if role not in Role.values:
        raise ValidationError({"role": f"“{role}” is not a project role."})
    if not user.is_active:
        raise ValidationError({"user": f"{user} is deactivated and cannot join a project."})
    if Membership.objects.filter(project=project, user=user, role=role).exists():
        raise ValidationError(
            {"role": f"{user} already holds the role {Role(role).label} on this project."}
        )
    membership = Membership.objects.create(project=project, user=user, role=role, added_by=actor)
    sync_member_permissions(project, user)
    return membership


@transaction.atomic
def membership_remove(*, actor: User, membership: Membership) -> None:
    """Take one role away from a member; their permissions shrink to their remaining roles."""
    project = membership.project
    require_project_perm(actor, "manage_members", project)
    # Lock the project's memberships so two removals cannot both pass the last-lead check.
    leads = list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.PROJECT_LEAD)
        .values_list("id", flat=True)
    )
    if membership.role == Role.PROJECT_LEAD and leads == [membership.id]:
        raise ValidationError(
            {"role": "A project needs at least one project lead: add another lead first."}
        )
    user = membership.user
    membership.delete()
    sync_member_permissions(project, user)
    if not Membership.objects.filter(project=project, user=user).exists():
        # Someone who left the project cannot work on its items any more.
        project.checklist_items.filter(assignee=user).update(assignee=None)
