"""Project roles and the object permissions each role grants.

Declared in code so that a change to who-may-do-what goes through review (the clinicedc
pattern). `governance.permissions.sync_member_permissions` turns a user's roles on a project
into django-guardian object permissions whenever a membership changes.
"""

from django.db import models


class Role(models.TextChoices):
    PROJECT_LEAD = "project_lead", "Project lead"
    CLINICAL_LEAD = "clinical_lead", "Clinical lead"
    DATA_STEWARD = "data_steward", "Data steward"
    PRIVACY_OFFICER = "privacy_officer", "Privacy officer"
    CLINICAL_SAFETY_OFFICER = "clinical_safety_officer", "Clinical safety officer"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"
    COMMITTEE_CHAIR = "committee_chair", "Committee chair"
    COMMITTEE_MEMBER = "committee_member", "Committee member"
    AUDITOR = "auditor", "Auditor (read-only)"


# Object permissions on governance.Project (declared in Project.Meta.permissions).
VIEW = "view_project"
CHANGE = "change_project"
MANAGE_MEMBERS = "manage_members"
EDIT_CHECKLIST = "edit_checklist"
ADD_EVIDENCE = "add_evidence"
COMMENT = "comment"
SUBMIT_GATE = "submit_gate"
START_REVIEW = "start_review"
MANAGE_VERSIONS = "manage_versions"
UPLOAD_EVALUATION = "upload_evaluation"
SET_CRITERIA = "set_criteria"
VIEW_AUDIT = "view_audit"
EXPORT_REPORT = "export_report"
MANAGE_INCIDENTS = "manage_incidents"

_CONTRIBUTOR = {VIEW, EDIT_CHECKLIST, ADD_EVIDENCE, COMMENT}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.PROJECT_LEAD: frozenset(
        _CONTRIBUTOR
        | {
            CHANGE,
            MANAGE_MEMBERS,
            SUBMIT_GATE,
            MANAGE_VERSIONS,
            UPLOAD_EVALUATION,
            VIEW_AUDIT,
            MANAGE_INCIDENTS,
        }
    ),
    Role.CLINICAL_LEAD: frozenset(_CONTRIBUTOR),
    Role.DATA_STEWARD: frozenset(_CONTRIBUTOR | {MANAGE_VERSIONS, UPLOAD_EVALUATION}),
    Role.PRIVACY_OFFICER: frozenset(_CONTRIBUTOR | {VIEW_AUDIT}),
    Role.CLINICAL_SAFETY_OFFICER: frozenset(
        _CONTRIBUTOR | {SET_CRITERIA, VIEW_AUDIT, MANAGE_INCIDENTS}
    ),
    Role.COMPLIANCE_OFFICER: frozenset(_CONTRIBUTOR | {VIEW_AUDIT, EXPORT_REPORT}),
    Role.COMMITTEE_CHAIR: frozenset(
        {VIEW, COMMENT, START_REVIEW, SET_CRITERIA, VIEW_AUDIT, EXPORT_REPORT, MANAGE_INCIDENTS}
    ),
    Role.COMMITTEE_MEMBER: frozenset({VIEW, COMMENT}),
    Role.AUDITOR: frozenset({VIEW, VIEW_AUDIT, EXPORT_REPORT}),
}

PROJECT_PERMISSIONS = [
    (MANAGE_MEMBERS, "Manage the project's memberships and roles"),
    (EDIT_CHECKLIST, "Edit checklist items owned by one of the member's roles"),
    (ADD_EVIDENCE, "Attach evidence to checklist items"),
    (COMMENT, "Comment on checklist items"),
    (SUBMIT_GATE, "Submit a phase gate for review"),
    (START_REVIEW, "Start the periodic review of the monitoring gate"),
    (MANAGE_VERSIONS, "Register model and dataset versions"),
    (UPLOAD_EVALUATION, "Upload evaluation records"),
    (SET_CRITERIA, "Set the evaluation criteria of gates"),
    (VIEW_AUDIT, "Read the project's audit trail"),
    (EXPORT_REPORT, "Export compliance reports"),
    (MANAGE_INCIDENTS, "Triage, assign and resolve incidents"),
]


def permissions_for_roles(roles: set[str]) -> set[str]:
    granted: set[str] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return granted
