"""E-mail notifications: who is told what when a gate or a checklist item needs someone.

- A gate enters review: the members holding a role whose approval it still needs, who have not
  signed in this round (a project lead's approval cannot count, so leads are not asked).
- A gate is approved or sent back with changes requested: the project's leads, with the reason.
- An approved gate is reopened because signed content changed: the leads and the signers whose
  signatures stopped counting, with the cause.
- Monitoring reopens the monitoring gate (a serious incident, a required criterion failing on a
  batch): the leads and the holders of the roles that must sign it, with the cause.
- An item is assigned: the assignee, unless they assigned it to themselves.

The gate and checklist services call these functions inside their transactions. Each one works
out the recipients and renders the message there and then (an e-mail says what happened at that
moment), and queues one sending job per recipient for when the transaction commits: a change that
rolls back sends nothing. The job (`send_notification`) re-reads the recipient, so an opt-out,
a removed address or a deactivation in between is respected. People who turned notifications off
(`User.email_notifications`), have no e-mail address or are inactive get nothing.
"""

import logging
import random
import smtplib
from collections.abc import Iterable
from typing import Any

from celery import Task, current_app, shared_task
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from governance.models import Membership, User
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem
from lifecycle.gates.models import Gate, GateState, Signature
from lifecycle.gates.readiness import readiness_of
from lifecycle.phases import Phase

logger = logging.getLogger(__name__)

SEND_NOTIFICATION_TASK = "lifecycle.send_notification"
SUBJECT_MAX = 200  # characters, prefix included: mail clients cut long subjects anyway


# --- Events ---------------------------------------------------------------------------------


def gate_entered_review(gate: Gate) -> None:
    """Ask the members whose approval the gate still needs to sign it."""
    readiness = readiness_of(gate)
    missing = readiness.missing_roles
    if not missing:
        return
    signed = {s.signer_id for s in readiness.signatures}
    leads = {lead.pk for lead in _holders(gate, [Role.PROJECT_LEAD])}
    roles_of: dict[User, list[str]] = {}
    for membership in (
        Membership.objects.filter(project=gate.project_id, role__in=missing)
        .exclude(user__in=signed | leads)
        .select_related("user")
        .order_by("user_id", "role")
    ):
        roles_of.setdefault(membership.user, []).append(Role(membership.role).label)
    project = gate.project
    for user, roles in roles_of.items():
        _notify(
            user,
            subject=f"Your signature is needed: {project.name}, {_short(gate)} gate",
            template="emails/gate_in_review.txt",
            context={
                "gate": gate,
                "project": project,
                "phase": _phase(gate),
                "roles": roles,
                "review_round": gate.review_round,
                "submission_note": gate.decision_note,
                "link": _gate_link(gate),
            },
        )


def gate_decided(gate: Gate) -> None:
    """Tell the project's leads that the gate was approved or sent back (with the reason).
    Does nothing for a gate in any other state, so it may be called after every signature."""
    if gate.state not in (GateState.APPROVED, GateState.CHANGES_REQUESTED):
        return
    approved = gate.state == GateState.APPROVED
    project = gate.project
    following = Phase(gate.phase).next
    outcome = "approved" if approved else "changes requested"
    for lead in _holders(gate, [Role.PROJECT_LEAD], excluding=gate.decided_by_id):
        _notify(
            lead,
            subject=f"{_short(gate)} gate {outcome}: {project.name}",
            template="emails/gate_decided.txt",
            context={
                "gate": gate,
                "project": project,
                "phase": _phase(gate),
                "approved": approved,
                "decided_by": _name(gate.decided_by) if gate.decided_by else "",
                "reason": gate.decision_note,
                "next_phase": following.label if approved and following else "",
                "link": _gate_link(gate),
            },
        )


def gate_reopened(
    gate: Gate,
    cause: str,
    *,
    invalidated: Iterable[Signature] = (),
    by: User | None = None,
) -> None:
    """Tell the project's leads, and the signers whose signatures `invalidated` stopped
    counting, that the approved gate went back to review because of `cause`. Whoever made the
    change (`by`) is not told about it."""
    project = gate.project
    signatures = list(invalidated)
    excluded = by.pk if by is not None else None
    recipients: dict[int, tuple[User, list[str]]] = {
        lead.pk: (lead, []) for lead in _holders(gate, [Role.PROJECT_LEAD], excluding=excluded)
    }
    signers = User.objects.in_bulk({s.signer_id for s in signatures} - {excluded})
    for signature in signatures:
        if signature.signer_id in signers:
            user = signers[signature.signer_id]
            recipients.setdefault(user.pk, (user, []))[1].append(Role(signature.role).label)
    for user, signed_as in recipients.values():
        _notify(
            user,
            subject=f"{_short(gate)} gate reopened: {project.name}",
            template="emails/gate_reopened.txt",
            context={
                "gate": gate,
                "project": project,
                "phase": _phase(gate),
                "cause": cause,
                "signed_as": signed_as,
                "invalidated_count": len(signatures),
                "link": _gate_link(gate),
            },
        )


def monitoring_gate_reopened(gate: Gate, cause: str, *, by: User | None = None) -> None:
    """Tell the project's leads and the holders of the roles that must sign the monitoring
    gate that monitoring put it back in front of them, and why."""
    roles = [Role.PROJECT_LEAD, *readiness_of(gate).required_roles]
    project = gate.project
    for user in _holders(gate, roles, excluding=by.pk if by is not None else None):
        _notify(
            user,
            subject=f"Monitoring reopened the {_short(gate)} gate: {project.name}",
            template="emails/monitoring_gate_reopened.txt",
            context={
                "gate": gate,
                "project": project,
                "phase": _phase(gate),
                "cause": cause,
                "link": _gate_link(gate),
                "monitoring_link": _absolute(reverse("monitoring", args=[project.slug])),
            },
        )


def item_assigned(item: ChecklistItem, by: User) -> None:
    """Tell the item's assignee it is theirs now (not when they took it themselves)."""
    assignee = item.assignee
    if assignee is None or assignee.pk == by.pk:
        return
    project = item.project
    _notify(
        assignee,
        subject=f"Assigned to you: {item.title} ({project.name})",
        template="emails/item_assigned.txt",
        context={
            "item": item,
            "project": project,
            "phase": Phase(item.phase).label,
            "assigned_by": _name(by),
            "link": _absolute(
                reverse("phase", args=[project.slug, item.phase]) + f"#item-{item.key}"
            ),
        },
    )


# --- Recipients and messages ------------------------------------------------------------------


def reachable(user: User | None) -> bool:
    """Whether `user` may be sent a notification: active, with an address, not opted out."""
    return bool(user and user.is_active and user.email and user.email_notifications)


def _holders(gate: Gate, roles: list[str], *, excluding: int | None = None) -> list[User]:
    """The distinct members holding one of `roles` on the gate's project."""
    holders = User.objects.filter(memberships__project=gate.project_id, memberships__role__in=roles)
    if excluding is not None:
        holders = holders.exclude(pk=excluding)
    return list(holders.distinct().order_by("pk"))


def _name(user: User) -> str:
    return user.get_full_name() or user.get_username()


def _phase(gate: Gate) -> str:
    return Phase(gate.phase).label


def _short(gate: Gate) -> str:
    return Phase(gate.phase).short_label


def _absolute(path: str) -> str:
    return settings.SITE_URL + path


def _gate_link(gate: Gate) -> str:
    return _absolute(reverse("phase", args=[gate.project.slug, gate.phase]) + "#gate")


def subject_line(subject: str) -> str:
    """The subject with the site's prefix, on one line: names typed by users never reach a
    header with a line break in them (which would forge headers, and Django refuses)."""
    prefix = settings.EMAIL_SUBJECT_PREFIX.strip()
    line = " ".join(f"{prefix} {subject}".split())
    return line if len(line) <= SUBJECT_MAX else line[: SUBJECT_MAX - 1] + "…"


def _notify(user: User, *, subject: str, template: str, context: dict[str, Any]) -> None:
    """Render the message for `user` and queue its sending for when the transaction commits."""
    if not reachable(user):
        return
    body = render_to_string(
        template,
        {
            **context,
            "recipient": _name(user),
            "settings_link": _absolute(reverse("account-notifications")),
        },
    )
    job = current_app.signature(SEND_NOTIFICATION_TASK, args=(user.pk, subject_line(subject), body))
    # Robust: in the embedded default the job runs in-process, after the change committed; a
    # mail problem must then never turn the user's committed change into an error page.
    transaction.on_commit(job.delay, robust=True)


# --- The sending job --------------------------------------------------------------------------


def _transient(exc: Exception) -> bool:
    """Worth trying again later: the relay is unreachable or answered 4xx (try later);
    a 5xx answer (a refused address, bad credentials) will not change."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return not 500 <= exc.smtp_code < 600
    return isinstance(exc, smtplib.SMTPException | OSError)


def _backoff(retries: int) -> float:
    return random.uniform(0, min(3600, 60 * 2**retries))  # noqa: S311 - jitter, not security


@shared_task(bind=True, name=SEND_NOTIFICATION_TASK, acks_late=True, max_retries=6)
def send_notification(
    self: Task[[int, str, str], str], user_id: int, subject: str, body: str
) -> str:
    """Send one rendered notification to user `user_id`, if they may still receive it.

    Transient SMTP errors are retried, six times at most, with exponential backoff and full
    jitter (an hour in all at most); a permanent refusal, or the last failure, is logged and
    ends the job. Run in-process (no broker), it tries once: there is no queue to wait in, and
    the request that queued it has already committed its change."""
    user = User.objects.filter(pk=user_id).first()
    if user is None or not reachable(user):
        return "skipped: recipient opted out, inactive or without an address"
    message = EmailMessage(subject=subject, body=body, to=[user.email])
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        retries = self.request.retries
        if self.request.is_eager or not _transient(exc) or retries >= (self.max_retries or 0):
            logger.warning("notification to user %s not sent: %r", user_id, exc)
            return f"failed: {exc!r}"
        raise self.retry(exc=exc, countdown=_backoff(retries)) from exc
    return "sent"
