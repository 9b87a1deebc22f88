from lifecycle.evaluations.models import EvaluationRun, RunStatus
from lifecycle.gates.models import Gate

# The order that makes a gate's most recent succeeded run come first.
LATEST_FIRST = ("-finished_at", "-id")


def latest_run(gate: Gate) -> EvaluationRun | None:
    """The gate's most recent succeeded run: the one its criteria are judged on."""
    return (
        EvaluationRun.objects.filter(gate=gate, status=RunStatus.SUCCEEDED)
        .select_related("model_version", "dataset_version")
        .order_by(*LATEST_FIRST)
        .first()
    )
