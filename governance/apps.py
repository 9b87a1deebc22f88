from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_sync_role_permissions, sender=self)


def _sync_role_permissions(sender, using: str = "default", **kwargs) -> None:
    """After migrations: give existing members the permissions their roles gained in code.

    New permission codenames only exist once Django creates them after migrating, so a data
    migration cannot do this. Idempotent: members already in step are left alone.
    """
    from governance.models import Membership, Project, User
    from governance.permissions import sync_member_permissions

    pairs = set(Membership.objects.using(using).values_list("project", "user"))
    projects = Project.objects.using(using).in_bulk({project for project, _ in pairs})
    users = User.objects.using(using).in_bulk({user for _, user in pairs})
    for project_id, user_id in sorted(pairs):
        sync_member_permissions(projects[project_id], users[user_id])
