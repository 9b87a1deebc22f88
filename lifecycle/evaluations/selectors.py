"""Reads of evaluations: runs restricted to what a user may see, the runs a gate can be judged
on, and the results behind the trend charts."""

from collections.abc import Iterable

from django.db.models import QuerySet

from governance.models import User
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun, ResultScope, RunStatus
from lifecycle.gates.models import Gate

# The order that makes a gate's most recent succeeded run come first.
LATEST_FIRST = ("-finished_at", "-id")


def evidence_candidates(gate: Gate) -> QuerySet[EvaluationRun]:
    """The runs a gate can be judged on: its succeeded runs, newest first."""
    return (
        EvaluationRun.objects.filter(gate=gate, status=RunStatus.SUCCEEDED)
        .select_related("model_version", "dataset_version")
        .order_by(*LATEST_FIRST)
    )


def runs_for_user(user: User) -> QuerySet[EvaluationRun]:
    """Evaluation runs of the projects `user` may see, newest first."""
    return (
        EvaluationRun.objects.restrict(user)
        .select_related("gate", "model_version", "dataset_version", "requested_by")
        .order_by("-created_at", "-id")
    )


def trend_results(
    runs: Iterable[EvaluationRun], metrics: Iterable[str]
) -> QuerySet[EvaluationResult]:
    """Overall and fairness results of `metrics` in `runs` (runs the caller may see)."""
    return EvaluationResult.objects.filter(run__in=list(runs), metric__in=list(metrics)).exclude(
        scope=ResultScope.GROUP
    )
