"""Permission-restricted reads of the lifecycle domain."""

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from governance.models import Project, User
from governance.selectors import projects_for_user
from lifecycle.checklists.models import SETTLED_STATUSES, ChecklistItem, ChecklistTemplate, Evidence
from lifecycle.gates.models import Gate


def active_template() -> ChecklistTemplate:
    """The template new projects start from."""
    template = ChecklistTemplate.objects.filter(is_active=True).first()
    if template is None:
        raise ValidationError(
            "No checklist template is active: an administrator must activate one first."
        )
    return template


def checklist_items_for_user(user: User, *, project: Project | None = None) -> QuerySet:
    """Checklist items of the projects `user` may see."""
    items = ChecklistItem.objects.filter(project__in=projects_for_user(user))
    if project is not None:
        items = items.filter(project=project)
    return items.select_related("assignee", "gate")


def blocking_items(gate: Gate) -> QuerySet[ChecklistItem]:
    """Required items of the gate that are neither done nor justified as not applicable."""
    return gate.items.filter(required=True).exclude(status__in=SETTLED_STATUSES)


def evidence_for_user(user: User) -> QuerySet[Evidence]:
    return Evidence.objects.filter(item__project__in=projects_for_user(user)).select_related(
        "item", "item__project", "added_by"
    )
