"""Writes about projects and who works on them.

Every function takes the acting user, checks permission, validates, and changes the data in
one transaction; a refused call changes nothing.
"""

import datetime
import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audits.models import Action
from audits.trail import changed, record, snapshot
from governance.models import ApiToken, Membership, Project, User
from governance.permissions import (
    require_global_perm,
    require_project_perm,
    sync_member_permissions,
)
from governance.roles import Role
from governance.selectors import projects_for_user


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


def _membership_values(membership: Membership) -> dict[str, Any]:
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


def _user_values(user: User) -> dict[str, Any]:
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
    require_global_perm(actor, "governance.add_user", "create user accounts")
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
    require_global_perm(actor, "governance.change_user", "change user accounts")
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


# --- Electronic signatures ------------------------------------------------------------------


# --- Sign-off policies ------------------------------------------------------------------------


# --- Authenticator devices ------------------------------------------------------------------


@transaction.atomic
def otp_device_save(*, actor: User, device: TOTPDevice) -> TOTPDevice:
    """Enrol or change a user's authenticator (TOTP) device; signing then needs its code."""
    require_global_perm(actor, "otp_totp.change_totpdevice", "manage authenticator devices")
    created = device.pk is None
    device.full_clean()
    device.save()
    record(
        actor=actor,
        action=Action.OTP_DEVICE_SAVE,
        project=None,
        target=device.user,
        after={
            "device": device.pk,
            "name": device.name,
            "confirmed": device.confirmed,
            "created": created,
        },
    )
    return device


@transaction.atomic
def otp_device_delete(*, actor: User, device: TOTPDevice) -> None:
    """Remove a user's authenticator device (the secret key is never recorded); with their last
    one go their recovery codes, which would otherwise still be asked for at signing."""
    require_global_perm(actor, "otp_totp.delete_totpdevice", "remove authenticator devices")
    user, values = device.user, {"device": device.pk, "name": device.name}
    device.delete()
    if not TOTPDevice.objects.filter(user=user).exists():
        removed, _ = StaticDevice.objects.filter(user=user).delete()
        values["recovery_codes_removed"] = bool(removed)
    record(actor=actor, action=Action.OTP_DEVICE_DELETE, project=None, target=user, before=values)


# --- API tokens ---------------------------------------------------------------------------------

TOKEN_PREFIX = "lgv_"  # noqa: S105 - a format marker, not a secret


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    actor: User,
    name: str,
    expires_at: datetime.datetime | None = None,
    read_only: bool = False,
    projects: Iterable[Project] = (),
) -> tuple[ApiToken, str]:
    """Create a personal API token and return it with its secret, which is never shown again.

    A token limited to projects may only list projects its user can see.
    """
    if not actor.is_active:
        raise PermissionDenied("A deactivated account cannot create API tokens.")
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token after what uses it."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    projects = list(projects)
    visible = set(projects_for_user(actor).values_list("pk", flat=True))
    foreign = [p.name for p in projects if p.pk not in visible]
    if foreign:
        raise ValidationError({"projects": f"You have no role on: {', '.join(foreign)}."})
    prefix = secrets.token_hex(4)
    raw = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=actor,
        name=name[:100],
        prefix=prefix,
        key_sha256=hash_token(raw),
        read_only=read_only,
        expires_at=expires_at,
    )
    token.projects.set(projects)
    record(
        actor=actor,
        action=Action.API_TOKEN_CREATE,
        project=None,
        target=token,
        after={
            "name": token.name,
            "prefix": prefix,
            "read_only": read_only,
            "expires_at": expires_at,
            "projects": [p.slug for p in projects],
        },
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, actor: User, token: ApiToken) -> ApiToken:
    """Revoke a token (its own user, or an administrator); it stops working at once."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.user_id != actor.pk and not actor.has_perm("governance.change_apitoken"):
        raise PermissionDenied("You can only revoke your own API tokens.")
    if token.revoked_at is not None:
        raise ValidationError("This token was already revoked.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    record(
        actor=actor,
        action=Action.API_TOKEN_REVOKE,
        project=None,
        target=token,
        after={"prefix": token.prefix, "user": token.user_id},
    )
    return token
