"""Reads of gates and sign-off policies."""

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet

from governance.models import Project, User
from lifecycle.checklists.models import SETTLED_STATUSES
from lifecycle.gates.models import Gate, SignOffPolicy


def gates_for_project(project: Project) -> QuerySet[Gate]:
    """The project's gates in phase order, annotated with their item counts."""
    settled = Q(items__status__in=SETTLED_STATUSES)
    return (
        Gate.objects.filter(project=project)
        .annotate(
            item_count=Count("items"),
            settled_count=Count("items", filter=settled),
        )
        .order_by("position")
    )


def active_signoff_policy() -> SignOffPolicy:
    """The sign-off policy new projects are reviewed under."""
    policy = SignOffPolicy.objects.filter(is_active=True).first()
    if policy is None:
        raise ValidationError(
            "No sign-off policy is active: an administrator must activate one first."
        )
    return policy


def gate_get_for_user(user: User, project: Project, phase: str) -> Gate:
    """The project's gate of `phase` if `user` may see the project; Gate.DoesNotExist
    otherwise."""
    gate = Gate.objects.restrict(user).get(project=project, phase=phase)
    gate.project = project
    return gate
