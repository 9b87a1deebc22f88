"""Permission-restricted reads of the audit trail."""

from datetime import datetime

from django.db.models import QuerySet

from audits.chain import GLOBAL_CHAIN
from audits.models import AuditChain, AuditEvent
from governance.models import Project, User
from governance.permissions import has_project_perm


def audit_timeline(
    user: User,
    *,
    project: Project | None,
    actor: User | int | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """A project's audit events, newest first, filtered in the database.

    Empty for anyone without the project's view_audit permission. `project=None` is the global
    chain (logins, templates, user accounts): for holders of `audits.view_auditevent` only.
    """
    # The chain's id as a scalar subquery: the events are then read through the
    # (chain, sequence) index, newest first, instead of joining every event to its chain.
    if project is None:
        allowed = user.is_active and user.has_perm("audits.view_auditevent")
        chain = AuditChain.objects.filter(key=GLOBAL_CHAIN)
    else:
        allowed = has_project_perm(user, "view_audit", project)
        chain = AuditChain.objects.filter(project=project)
    events = AuditEvent.objects.filter(chain_id=chain.values("pk")[:1])
    if not allowed:
        return AuditEvent.objects.none()
    if actor is not None:
        events = events.filter(actor_user=actor)
    if action:
        events = events.filter(action=action)
    if target_type:
        events = events.filter(target_type=target_type)
    if target_id is not None and target_id != "":
        events = events.filter(target_id=str(target_id))
    if since is not None:
        events = events.filter(recorded_at__gte=since)
    if until is not None:
        events = events.filter(recorded_at__lt=until)
    return events.select_related("actor_user").order_by("-sequence")
