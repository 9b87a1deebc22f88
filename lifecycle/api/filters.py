"""Query filters of the lifecycle lists (django-filter), applied in the database."""

import django_filters

from lifecycle.checklists.models import ChecklistItem
from lifecycle.evaluations.models import EvaluationRun


class ChecklistItemFilter(django_filters.FilterSet):
    assignee = django_filters.CharFilter(field_name="assignee__username")

    class Meta:
        model = ChecklistItem
        fields = ["phase", "status", "owner_role", "required", "assignee"]


class EvaluationRunFilter(django_filters.FilterSet):
    gate = django_filters.CharFilter(field_name="gate__phase")
    model_version = django_filters.CharFilter(field_name="model_version__label")
    dataset_version = django_filters.CharFilter(field_name="dataset_version__label")

    class Meta:
        model = EvaluationRun
        fields = ["status", "gate", "model_version", "dataset_version"]
