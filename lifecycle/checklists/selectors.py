"""Reads of checklists: the active template, and items and evidence restricted to what a
user may see."""

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet

from governance.models import User
from lifecycle.checklists.models import ChecklistItem, ChecklistTemplate, Comment, Evidence


def active_template() -> ChecklistTemplate:
    """The template new projects start from."""
    template = ChecklistTemplate.objects.filter(is_active=True).first()
    if template is None:
        raise ValidationError(
            "No checklist template is active: an administrator must activate one first."
        )
    return template


def checklist_items_for_user(user: User) -> QuerySet[ChecklistItem]:
    """Checklist items of the projects `user` may see, with their evidence and discussion."""
    evidence = Evidence.objects.select_related("added_by").order_by("added_at")
    comments = Comment.objects.select_related("author").order_by("created_at")
    return (
        ChecklistItem.objects.restrict(user)
        .select_related("assignee", "gate")
        # django-stubs cannot type a Prefetch of a reverse relation through a custom manager.
        .prefetch_related(Prefetch("evidence", evidence), Prefetch("comments", comments))  # type: ignore[type-var]
        .order_by("position")
    )


def evidence_for_user(user: User) -> QuerySet[Evidence]:
    """Evidence of the projects `user` may see."""
    return Evidence.objects.restrict(user).select_related("item", "item__project", "added_by")
