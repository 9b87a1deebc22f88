"""Querysets restricted to what a user may see, NetBox-style: `Model.objects.restrict(user)`.

Every project-scoped model names the path from itself to its project (`restrict_path`); the
one rule of visibility lives here: a user sees the projects they hold a role on (django-
guardian's `view_project` object permission, granted by their roles), or every project with the
explicit global `governance.view_project` permission. Inactive and anonymous users see nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar

from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser, AnonymousUser

_M = TypeVar("_M", bound=models.Model)


def visible_project_ids(user: AbstractUser | AnonymousUser) -> Any:
    """A subquery of the ids of the projects `user` may see, or None for every project."""
    from governance.models import ProjectUserObjectPermission

    if user.has_perm("governance.view_project"):
        return None
    return ProjectUserObjectPermission.objects.filter(
        user=user, permission__codename="view_project"
    ).values("content_object")


class RestrictedQuerySet(models.QuerySet[_M]):
    """A queryset that can narrow itself to the rows of projects a user may see."""

    def restrict(self, user: AbstractUser | AnonymousUser) -> Self:
        if not user.is_authenticated or not user.is_active:
            return self.none()
        visible = visible_project_ids(user)
        if visible is None:
            return self.all()
        path: str = getattr(self.model, "restrict_path", "project")
        return self.filter(**{f"{path}__in" if path else "pk__in": visible})
