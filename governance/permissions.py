"""Checking and granting project permissions.

A member's django-guardian object permissions are always exactly the union of what their roles
grant (`governance.roles.ROLE_PERMISSIONS`); `sync_member_permissions` restores that after every
membership change, inside the same transaction.
"""

from dataclasses import dataclass

from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from governance.models import Membership, Project, ProjectUserObjectPermission, User
from governance.roles import PROJECT_PERMISSIONS, permissions_for_roles

APP = "governance"


def roles_of(user: User, project: Project) -> set[str]:
    """The roles `user` holds on `project` (empty for anonymous users and outsiders)."""
    if not user.is_authenticated:
        return set()
    return set(Membership.objects.filter(project=project, user=user).values_list("role", flat=True))


def has_project_perm(user: User, codename: str, project: Project) -> bool:
    """Object permission through a role; the view permission also through a global grant."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.has_perm(f"{APP}.{codename}", project):
        return True
    # Staff with the explicit model-level permission may read every project (never write).
    return codename == "view_project" and user.has_perm(f"{APP}.view_project")


def require_project_perm(user: User, codename: str, project: Project) -> None:
    """Raise PermissionDenied unless `user` holds `codename` on `project`."""
    if not has_project_perm(user, codename, project):
        label = _permission_label(codename)
        raise PermissionDenied(f"You are not allowed to {label} on project “{project.name}”.")


def require_global_perm(user: User, perm: str, what: str) -> None:
    """Raise PermissionDenied unless `user` is active and holds the global permission `perm`
    (administration: templates, policies, accounts)."""
    if not user.is_active or not user.has_perm(perm):
        raise PermissionDenied(f"You are not allowed to {what}.")


def _permission_label(codename: str) -> str:
    labels = {
        "view_project": "view this project",
        "change_project": "edit the project's details",
        "manage_members": "manage memberships",
        "edit_checklist": "edit checklist items",
        "add_evidence": "attach evidence",
        "comment": "comment",
        "submit_gate": "submit gates for review",
        "start_review": "start periodic reviews",
        "manage_versions": "register model and dataset versions",
        "upload_evaluation": "upload evaluation records",
        "set_criteria": "set gate criteria",
        "view_audit": "read the audit trail",
        "export_report": "export reports",
        "manage_incidents": "manage incidents",
    }
    return labels.get(codename, codename.replace("_", " "))


def sync_member_permissions(project: Project, user: User) -> None:
    """Make `user`'s object permissions on `project` match the roles they now hold."""
    wanted = permissions_for_roles(roles_of(user, project))
    current = dict(
        ProjectUserObjectPermission.objects.filter(user=user, content_object=project).values_list(
            "permission__codename", "id"
        )
    )
    stale = [pk for codename, pk in current.items() if codename not in wanted]
    if stale:
        ProjectUserObjectPermission.objects.filter(id__in=stale).delete()
    missing = wanted - current.keys()
    if missing:
        permissions = Permission.objects.filter(
            content_type__app_label=APP, content_type__model="project", codename__in=missing
        )
        ProjectUserObjectPermission.objects.bulk_create(
            ProjectUserObjectPermission(user=user, content_object=project, permission=permission)
            for permission in permissions
        )


def is_member(user: User, project: Project) -> bool:
    return Membership.objects.filter(project=project, user=user).exists()


@dataclass(frozen=True)
class Access:
    """What one user may do on one project, read once for a whole page (two queries), so that
    a page can show only the controls the user may use without a query per control."""

    roles: frozenset[str]
    perms: frozenset[str]

    def can(self, codename: str) -> bool:
        return codename in self.perms


def project_access(user: User, project: Project) -> Access:
    if not user.is_authenticated or not user.is_active:
        return Access(frozenset(), frozenset())
    roles = frozenset(roles_of(user, project))
    perms = set(
        ProjectUserObjectPermission.objects.filter(user=user, content_object=project).values_list(
            "permission__codename", flat=True
        )
    )
    if user.is_superuser:
        perms |= {codename for codename, _ in PROJECT_PERMISSIONS} | {
            "view_project",
            "change_project",
        }
    elif user.has_perm(f"{APP}.view_project"):
        perms.add("view_project")
    return Access(roles, frozenset(perms))
