"""Writes about projects and who works on them.

Every function takes the acting user, checks permission, validates, and changes the data in
one transaction; a refused call changes nothing.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from audits.models import Action
from audits.services import changed, record, snapshot
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
    record(
        actor=actor,
        action=Action.PROJECT_CREATE,
        project=project,
        target=project,
        after={
            **snapshot(project, ("slug", *PROJECT_EDITABLE_FIELDS, "owner")),
            "checklist_template": template.version,
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
    record(
        actor=actor,
        action=Action.PROJECT_UPDATE,
        project=project,
        target=project,
        before=before,
        after=after,
    )
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
    record(
        actor=actor,
        action=Action.MEMBERSHIP_ADD,
        project=project,
        target=membership,
        after=_membership_values(membership),
    )
    return membership


def _membership_values(membership: Membership) -> dict:
    return {
        "user": membership.user_id,
        "user_name": membership.user.get_full_name() or membership.user.get_username(),
        "role": membership.role,
    }


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
    values = _membership_values(membership)
    target_id, target_text = membership.pk, str(membership)
    membership.delete()
    sync_member_permissions(project, user)
    unassigned: list[int] = []
    if not Membership.objects.filter(project=project, user=user).exists():
        # Someone who left the project cannot work on its items any more.
        assigned = project.checklist_items.filter(assignee=user)
        unassigned = list(assigned.values_list("id", flat=True))
        assigned.update(assignee=None)
    record(
        actor=actor,
        action=Action.MEMBERSHIP_REMOVE,
        project=project,
        target_type="governance.membership",
        target_id=target_id,
        target_text=target_text,
        before=values,
        after={"unassigned_items": unassigned} if unassigned else None,
    )


# --- User accounts ----------------------------------------------------------------------------

USER_FIELDS = ("first_name", "last_name", "email", "is_active", "is_staff", "is_superuser")


def _user_values(user: User) -> dict:
    values = snapshot(user, USER_FIELDS)
    values["permissions"] = sorted(
        f"{app}.{codename}"
        for app, codename in user.user_permissions.values_list(
            "content_type__app_label", "codename"
        )
    )
    return values


@transaction.atomic
def user_create(
    *,
    actor: User,
    username: str,
    password: str,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
) -> User:
    """Create an account; the password must pass the configured password validators."""
    if not actor.is_active or not actor.has_perm("governance.add_user"):
        raise PermissionDenied("You are not allowed to create user accounts.")
    user = User(username=username, first_name=first_name, last_name=last_name, email=email)
    user.full_clean(exclude=["password"])
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user.set_password(password)
    user.save()
    record(
        actor=actor,
        action=Action.USER_CREATE,
        project=None,
        target=user,
        after={"username": user.username, **_user_values(user)},
    )
    return user


@transaction.atomic
def user_update(
    *, actor: User, user: User, permissions: Iterable[Permission] | None = None, **changes: Any
) -> User:
    """Change an account's names, e-mail, status flags or global permissions.

    Only a superuser may grant or remove superuser status.
    """
    if not actor.is_active or not actor.has_perm("governance.change_user"):
        raise PermissionDenied("You are not allowed to change user accounts.")
    unknown = set(changes) - set(USER_FIELDS)
    if unknown:
        raise ValidationError({field: "This field cannot be changed here." for field in unknown})
    user = User.objects.select_for_update().get(pk=user.pk)
    granting = "is_superuser" in changes and changes["is_superuser"] != user.is_superuser
    if granting and not actor.is_superuser:
        raise PermissionDenied("Only a superuser can grant or remove superuser status.")
    before = _user_values(user)
    for field, value in changes.items():
        setattr(user, field, value)
    user.full_clean(exclude=["password"])
    user.save()
    if permissions is not None:
        user.user_permissions.set(permissions)
    before, after = changed(before, _user_values(user))
    record(
        actor=actor,
        action=Action.USER_UPDATE,
        project=None,
        target=user,
        before=before,
        after=after,
    )
    return user


@transaction.atomic
def user_set_password(*, actor: User, user: User, password: str) -> User:
    """Set a new password (validated); the event records that it changed, never the value."""
    if actor.pk != user.pk and not actor.has_perm("governance.change_user"):
        raise PermissionDenied("You are not allowed to change this user's password.")
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user = User.objects.select_for_update().get(pk=user.pk)
    user.set_password(password)
    user.save(update_fields=["password"])
    record(actor=actor, action=Action.USER_PASSWORD_CHANGE, project=None, target=user)
    return user
