"""Writes about projects and who works on them.

Every function takes the acting user, checks permission, validates, and changes the data in
one transaction; a refused call changes nothing.
"""

import datetime
import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_otp import devices_for_user
from django_otp.plugins.otp_totp.models import TOTPDevice

from audits.context import current
from audits.models import Action
from audits.services import changed, record, snapshot
from governance import signoffs
from governance.models import (
    ApiToken,
    Membership,
    Project,
    ReauthFailure,
    RiskTier,
    Signature,
    SignatureMeaning,
    SignOffPolicy,
    SignOffRequirement,
    User,
)
from governance.permissions import require_project_perm, sync_member_permissions
from governance.roles import Role
from governance.selectors import projects_for_user
from governance.versioning import make_sole_active
from lifecycle import evaluations
from lifecycle.models import Gate
from lifecycle.phases import Phase
from lifecycle.selectors import active_template, blocking_items
from lifecycle.services import checklist_instantiate, open_next_phase

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


def active_signoff_policy() -> SignOffPolicy:
    """The sign-off policy new projects are reviewed under."""
    policy = SignOffPolicy.objects.filter(is_active=True).first()
    if policy is None:
        raise ValidationError(
            "No sign-off policy is active: an administrator must activate one first."
        )
    return policy


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


# --- Electronic signatures ------------------------------------------------------------------


class ReauthenticationFailed(PermissionDenied):
    """The password (or TOTP code) given at signing time was wrong; nothing was signed."""


def signing_locked_until(user: User) -> datetime.datetime | None:
    """When `user` may sign again after too many failed re-authentications, or None."""
    now = timezone.now()
    window = now - datetime.timedelta(seconds=settings.SIGNING_LOCKOUT_WINDOW)
    failures = list(
        ReauthFailure.objects.filter(user=user, at__gte=window).values_list("at", flat=True)
    )
    if len(failures) < settings.SIGNING_LOCKOUT_THRESHOLD:
        return None
    until = max(failures) + datetime.timedelta(seconds=settings.SIGNING_LOCKOUT_COOLOFF)
    return until if until > now else None


def _reauthentication_problem(user: User, password: str, otp_token: str) -> str | None:
    if not user.check_password(password or ""):
        return "wrong password"
    devices = list(devices_for_user(user, confirmed=True))
    if devices:
        if not otp_token:
            return "a TOTP code is required for this account"
        if not any(device.verify_token(otp_token) for device in devices):
            return "wrong TOTP code"
    return None


def _record_reauth_failure(actor: User, gate: Gate, problem: str) -> None:
    # Its own outermost transaction: committed even though the signing is refused.
    with transaction.atomic(durable=True):
        ReauthFailure.objects.create(user=actor, gate=gate, reason=problem, ip_address=current().ip)
        locked = signing_locked_until(actor)
        record(
            actor=actor,
            action=Action.REAUTH_FAILED,
            project=gate.project,
            target=gate,
            target_text=f"{gate.phase_enum.label} gate",
            after={
                "reason": problem,
                "locked_until": locked.isoformat() if locked else None,
            },
        )


def signoff_create(
    *,
    actor: User,
    gate: Gate,
    role: str,
    meaning: str,
    password: str,
    reason: str = "",
    otp_token: str = "",
) -> Signature:
    """Sign a gate in review (21 CFR Part 11): re-authenticate, check the signing rules, store
    the signature over the gate's manifest, and decide the gate.

    A rejection sends the gate back with the reason; the approval that completes the policy's
    required roles approves the gate and opens the next phase. Must not run inside another
    transaction: a failed re-authentication is committed on its own.
    """
    locked = signing_locked_until(actor)
    if locked is not None:
        raise PermissionDenied(
            f"Signing is locked after repeated failed re-authentication until "
            f"{timezone.localtime(locked):%Y-%m-%d %H:%M %Z}."
        )
    problem = _reauthentication_problem(actor, password, otp_token)
    if problem is not None:
        _record_reauth_failure(actor, gate, problem)
        raise ReauthenticationFailed(f"Re-authentication failed ({problem}): nothing was signed.")
    with transaction.atomic(durable=True):
        gate = (
            Gate.objects.select_for_update()
            .select_related("project__checklist_template", "project__signoff_policy")
            .get(pk=gate.pk)
        )
        project = gate.project
        held = set(signoffs.roles_that_may_sign(actor, gate))
        if role not in held:
            raise PermissionDenied(
                f"You do not hold the role {Role(role).label if role in Role.values else role} "
                f"on “{project.name}”, so you cannot sign in it."
            )
        if meaning not in SignatureMeaning.values:
            raise ValidationError({"meaning": f"“{meaning}” is not a signature meaning."})
        reason = reason.strip()
        if meaning == SignatureMeaning.REJECT and not reason:
            raise ValidationError({"reason": "A rejection needs a reason."})
        if gate.state != Gate.State.IN_REVIEW:
            raise ValidationError(
                f"The {gate.phase_enum.label} gate is {gate.get_state_display().lower()}: only a "
                "gate in review can be signed."
            )
        if Signature.objects.filter(
            gate=gate, review_round=gate.review_round, signer=actor
        ).exists():
            raise ValidationError(
                f"You already signed this gate in review round {gate.review_round}."
            )
        if meaning == SignatureMeaning.APPROVE:
            _require_may_approve(actor, gate, role, held)
        signed_at = timezone.now()
        manifest = signoffs.canonical(signoffs.build_manifest(gate))
        signature = Signature(
            gate=gate,
            review_round=gate.review_round,
            signer=actor,
            signer_name=actor.get_full_name() or actor.get_username(),
            role=role,
            meaning=meaning,
            reason=reason,
            signed_at=signed_at,
            manifest=manifest,
            manifest_sha256=signoffs.sha256_text(manifest),
        )
        signature.record_sha256 = signoffs.seal(signature)
        try:
            with transaction.atomic():
                signature.save()
        except IntegrityError:
            raise ValidationError(
                f"You already signed this gate in review round {gate.review_round}."
            ) from None
        before_state = gate.state
        _decide(gate, signature)
        record(
            actor=actor,
            action=Action.SIGNATURE_CREATE,
            project=project,
            target=signature,
            target_text=signature.manifestation,
            before={"gate_state": before_state},
            after={
                "gate": gate.pk,
                "review_round": signature.review_round,
                "role": role,
                "meaning": meaning,
                "manifest_sha256": signature.manifest_sha256,
                "record_sha256": signature.record_sha256,
                "gate_state": gate.state,
            },
            reason=reason,
        )
    return signature


def _require_may_approve(actor: User, gate: Gate, role: str, held: set[str]) -> None:
    project = gate.project
    if Role.PROJECT_LEAD in held:
        raise PermissionDenied(
            "The project lead cannot approve a gate of their own project (separation of duties)."
        )
    if project.risk_tier == RiskTier.HIGH and role == Role.COMMITTEE_CHAIR and len(held) > 1:
        raise PermissionDenied(
            "On a high-risk project the committee chair's approval must come from someone with "
            "no other role on the project."
        )
    blocking = list(blocking_items(gate).values_list("title", flat=True))
    if blocking:
        raise ValidationError(
            f"The gate cannot be approved while {len(blocking)} required item(s) are neither "
            f"done nor justified as not applicable: {'; '.join(blocking)}."
        )
    failing = [
        f"{v.criterion.expression} ({v.status}: {v.detail})"
        for v in evaluations.criteria_verdicts(gate)
        if v.criterion.required and not v.passed
    ]
    if failing:
        raise ValidationError(
            f"The gate cannot be approved while {len(failing)} required evaluation "
            f"criterion/criteria do not pass: {'; '.join(failing)}."
        )


def _decide(gate: Gate, signature: Signature) -> None:
    """Move the gate after a signature: a rejection sends it back, the last required approval
    approves it when every condition holds."""
    now = timezone.now()
    if signature.meaning == SignatureMeaning.REJECT:
        gate.state = Gate.State.CHANGES_REQUESTED
        gate.decided_at, gate.decided_by = now, signature.signer
        gate.decision_note = signature.reason
        gate.save(update_fields=["state", "decided_at", "decided_by", "decision_note"])
        return
    if signature.meaning != SignatureMeaning.APPROVE:
        return
    if not signoffs.gate_conditions(gate).can_be_approved:
        return
    gate.state = Gate.State.APPROVED
    gate.decided_at, gate.decided_by = now, signature.signer
    gate.decision_note = ""
    gate.save(update_fields=["state", "decided_at", "decided_by", "decision_note"])
    open_next_phase(gate, now)


# --- Sign-off policies ------------------------------------------------------------------------


def _require_policy_admin(actor: User) -> None:
    if not actor.is_active or not actor.has_perm("governance.change_signoffpolicy"):
        raise PermissionDenied("You are not allowed to manage sign-off policies.")


def policy_in_use(policy: SignOffPolicy) -> bool:
    return policy.is_active or policy.projects.exists()


@transaction.atomic
def signoff_policy_create_version(
    *, actor: User, source: SignOffPolicy, version: str, name: str = ""
) -> SignOffPolicy:
    """Start a new policy version as a copy of `source`; inactive until activated."""
    _require_policy_admin(actor)
    policy = SignOffPolicy(
        version=version.strip(), name=(name or source.name).strip(), created_by=actor
    )
    policy.full_clean()
    policy.save()
    SignOffRequirement.objects.bulk_create(
        SignOffRequirement(policy=policy, phase=r.phase, risk_tier=r.risk_tier, role=r.role)
        for r in source.requirements.all()
    )
    record(
        actor=actor,
        action=Action.POLICY_CREATE_VERSION,
        project=None,
        target=policy,
        after={"version": policy.version, "copied_from": source.version},
    )
    return policy


@transaction.atomic
def signoff_requirement_save(*, actor: User, requirement: SignOffRequirement) -> SignOffRequirement:
    """Add or change a requirement of a draft policy (never of one in use)."""
    _require_policy_admin(actor)
    policy = SignOffPolicy.objects.select_for_update().get(pk=requirement.policy_id)
    _require_draft(policy)
    requirement.full_clean()
    requirement.save()
    record(
        actor=actor,
        action=Action.POLICY_REQUIREMENT_SAVE,
        project=None,
        target=requirement,
        after={"policy": policy.version, **snapshot(requirement, ("phase", "risk_tier", "role"))},
    )
    return requirement


@transaction.atomic
def signoff_requirement_delete(*, actor: User, requirement: SignOffRequirement) -> None:
    _require_policy_admin(actor)
    policy = SignOffPolicy.objects.select_for_update().get(pk=requirement.policy_id)
    _require_draft(policy)
    values = snapshot(requirement, ("phase", "risk_tier", "role"))
    target_id, target_text = requirement.pk, str(requirement)
    requirement.delete()
    record(
        actor=actor,
        action=Action.POLICY_REQUIREMENT_DELETE,
        project=None,
        target_type="governance.signoffrequirement",
        target_id=target_id,
        target_text=target_text,
        before={"policy": policy.version, **values},
    )


def _require_draft(policy: SignOffPolicy) -> None:
    if policy_in_use(policy):
        raise ValidationError(
            f"Sign-off policy v{policy.version} is active or used by projects and cannot change: "
            "create a new version instead."
        )


@transaction.atomic
def signoff_policy_activate(*, actor: User, policy: SignOffPolicy) -> SignOffPolicy:
    """Make `policy` the one new projects are reviewed under."""
    _require_policy_admin(actor)
    policy = SignOffPolicy.objects.select_for_update().get(pk=policy.pk)
    missing = [
        f"{phase.label} / {tier.label}"
        for phase in Phase
        for tier in RiskTier
        if not policy.requirements.filter(phase=phase, risk_tier=tier).exists()
    ]
    if missing:
        raise ValidationError(
            f"Sign-off policy v{policy.version} names no approver for: {', '.join(missing)}."
        )
    make_sole_active(policy, actor=actor, action=Action.POLICY_ACTIVATE)
    return policy


# --- Authenticator devices ------------------------------------------------------------------


@transaction.atomic
def otp_device_save(*, actor: User, device: TOTPDevice) -> TOTPDevice:
    """Enrol or change a user's authenticator (TOTP) device; signing then needs its code."""
    if not actor.is_active or not actor.has_perm("otp_totp.change_totpdevice"):
        raise PermissionDenied("You are not allowed to manage authenticator devices.")
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
    """Remove a user's authenticator device (the secret key is never recorded)."""
    if not actor.is_active or not actor.has_perm("otp_totp.delete_totpdevice"):
        raise PermissionDenied("You are not allowed to remove authenticator devices.")
    user, values = device.user, {"device": device.pk, "name": device.name}
    device.delete()
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
