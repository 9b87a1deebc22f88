"""Item-level rules layered on the project permissions of `governance.roles`."""

from governance.models import User
from governance.permissions import Access, has_project_perm, roles_of
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem


def can_edit_item(user: User, item: ChecklistItem, access: Access | None = None) -> bool:
    """Members with checklist rights may edit an item they own by role, are assigned to,
    or, as project lead, any item of the project. Pages pass the `access` they read once."""
    if access is not None:
        allowed, roles = access.can("edit_checklist"), access.roles
    else:
        allowed = has_project_perm(user, "edit_checklist", item.project)
        roles = roles_of(user, item.project) if allowed else set()
    if not allowed:
        return False
    return (
        item.owner_role in roles
        or Role.PROJECT_LEAD in roles
        or (item.assignee_id is not None and item.assignee_id == user.pk)
    )
