"""Reads of compliance reports, restricted to who may see them."""

from django.db.models import QuerySet

from audits.models import Report
from governance.models import Project, User
from governance.permissions import has_project_perm
from governance.roles import EXPORT_REPORT


def can_export(user: User, project: Project) -> bool:
    """Reports are for the roles holding `export_report` (and the auditor, who holds it)."""
    return has_project_perm(user, EXPORT_REPORT, project)


def project_reports(user: User, project: Project) -> QuerySet[Report]:
    """The project's reports, newest first; none for a user who may not export them."""
    if not can_export(user, project):
        return Report.objects.none()
    return Report.objects.filter(project=project).select_related("requested_by")
