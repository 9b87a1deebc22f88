"""Permission-restricted reads about projects: callers never filter in Python."""

from django.db.models import QuerySet

from governance.models import Membership, Project, ProjectUserObjectPermission, User


def projects_for_user(user: User) -> QuerySet[Project]:
    """Projects `user` may see: those their roles grant `view_project` on (django-guardian's
    direct object permissions), or every project with the explicit global permission."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.has_perm("governance.view_project"):
        return Project.objects.all()
    granted = ProjectUserObjectPermission.objects.filter(
        user=user, permission__codename="view_project"
    ).values("content_object")
    return Project.objects.filter(pk__in=granted)


def project_get_for_user(user: User, slug: str) -> Project:
    """The project with `slug` if `user` may see it; Project.DoesNotExist otherwise, so callers
    answer 404 and a project's existence never leaks to outsiders."""
    return projects_for_user(user).get(slug=slug)


def memberships_of_project(project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user")
