"""Permission-restricted reads about projects: callers never filter in Python."""

from django.db.models import QuerySet

from governance.models import Membership, Project, User


def projects_for_user(user: User) -> QuerySet[Project]:
    """Projects `user` may see (`governance.querysets`: their roles, or the explicit global
    permission)."""
    return Project.objects.restrict(user)


def project_get_for_user(user: User, slug: str) -> Project:
    """The project with `slug` if `user` may see it; Project.DoesNotExist otherwise, so callers
    answer 404 and a project's existence never leaks to outsiders."""
    return projects_for_user(user).get(slug=slug)


def memberships_of_project(project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user")
