"""Audit-trail services that act for a user: exporting a chain (permission-checked)."""

from typing import IO

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from audits import chain as hashchain
from audits.models import Action, AuditChain
from audits.trail import locked_chain, record
from audits.verification import iter_rows
from governance.models import Project, User
from governance.permissions import require_project_perm


def audit_export(*, actor: User | None, project: Project | None, out: IO[str]) -> AuditChain:
    """Write the chain as JSON Lines (a header, then one sealed event a line) to `out`.

    The export is itself recorded, after the exported snapshot, so the file never contains
    its own export event.
    """
    if project is not None and actor is not None:
        require_project_perm(actor, "view_audit", project)
    elif actor is not None and not actor.has_perm("audits.view_auditevent"):
        raise PermissionDenied("You are not allowed to export the global audit trail.")
    with transaction.atomic():
        head = locked_chain(project)
        out.write(
            hashchain.export_header(
                head.key, head.length, head.head_hash, hashchain.format_time(timezone.now())
            )
            + "\n"
        )
        for row in iter_rows(head):
            out.write(hashchain.export_line(row[2], row[3], row[11]) + "\n")
        record(
            actor=actor,
            action=Action.AUDIT_EXPORT,
            project=project,
            target=head,
            target_type="audits.auditchain",
            after={"length": head.length, "head": head.head_hash},
        )
    return head
