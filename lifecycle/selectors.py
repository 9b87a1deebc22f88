"""Permission-restricted reads of the lifecycle domain."""

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet

from governance.models import Project, User
from governance.selectors import projects_for_user
from lifecycle.models import SETTLED_STATUSES, ChecklistItem, ChecklistTemplate, Evidence, Gate


def active_template() -> ChecklistTemplate:
    """The template new projects start from."""
    template = ChecklistTemplate.objects.filter(is_active=True).first()
    if template is None:
        raise ValidationError(
            "No checklist template is active: an administrator must activate one first."
        )
    return template


def gates_for_project(project: Project) -> QuerySet[Gate]:
    """The project's gates in phase order, annotated with their item counts."""
    settled = Q(items__status__in=SETTLED_STATUSES)
    return (
        Gate.objects.filter(project=project)
        .annotate(
            item_count=Count("items"),
            settled_count=Count("items", filter=settled),
            blocking_count=Count("items", filter=Q(items__required=True) & ~settled),
        )
        .order_by("position")
    )


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
