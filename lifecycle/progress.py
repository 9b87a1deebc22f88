"""Keeping `Project.current_phase` in step with the gates.

A step of the gate services (and of signature invalidation), always run inside their
transaction; not a service of its own.
"""

from django.utils import timezone

from governance.models import Project
from lifecycle.models import Gate, GateState
from lifecycle.phases import Phase


def refresh_current_phase(project: Project) -> None:
    """Set the project's current phase to its earliest gate that is not approved."""
    first_open = (
        Gate.objects.filter(project=project)
        .exclude(state=GateState.APPROVED)
        .order_by("position")
        .values_list("phase", flat=True)
        .first()
    )
    Project.objects.filter(pk=project.pk).update(
        current_phase=first_open or Phase.MONITORING, updated_at=timezone.now()
    )
