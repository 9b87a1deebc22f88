"""Permission-restricted reads about projects: callers never filter in Python."""

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from governance.models import Membership, Project, User


def projects_for_user(user: User) -> QuerySet[Project]:
    """Projects `user` may see: those they hold a role on, or all with the global permission."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    return get_objects_for_user(
        user, "governance.view_project", klass=Project, accept_global_perms=True
    )


def project_get_for_user(user: User, slug: str) -> Project:
    """The project with `slug` if `user` may see it; Project.DoesNotExist otherwise, so callers
    answer 404 and a project's existence never leaks to outsiders."""
    return projects_for_user(user).get(slug=slug)


def memberships_of_project(project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user")
