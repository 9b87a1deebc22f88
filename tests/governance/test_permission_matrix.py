"""Every service × every project role × member or outsider, against a declared policy.

Each case builds the state its service needs, calls it as a user holding exactly one role (or
no role at all), and checks the outcome against POLICY: allowed calls succeed, refused calls
raise PermissionDenied and change nothing. A mutating service missing from POLICY fails the
suite, so new services must declare who may call them.
"""

import datetime
import hashlib
import json

import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audits.context import system_context
from audits.models import AuditEvent, Report
from audits.reports import services as report_services
from governance.models import Membership, Project
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ChecklistItem, Comment, Evidence
from lifecycle.evaluations.models import DatasetVersion, EvaluationRun, ModelVersion
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate, GateCriterion, Signature
from lifecycle.monitoring import services as monitoring_services
from lifecycle.monitoring.models import (
    Feedback,
    Incident,
    IncidentEvent,
    MonitoringBatch,
    MonitoringPlan,
)
from lifecycle.phases import Phase
from lifecycle.projects.models import ModelFacts
from tests.factories import PASSWORD, UserFactory, approve, make_team, make_versions
from tests.services import all_services
from tests.services import service as find_service

pytestmark = pytest.mark.django_db

R = Role
CONTRIBUTORS = {
    R.PROJECT_LEAD,
    R.CLINICAL_LEAD,
    R.DATA_STEWARD,
    R.PRIVACY_OFFICER,
    R.CLINICAL_SAFETY_OFFICER,
    R.COMPLIANCE_OFFICER,
}
OWNER = "owner role of the item"

# Who may call each project-scoped service (OWNER: the item's owner role, plus the lead).
POLICY: dict[str, set] = {
    "project_update": {R.PROJECT_LEAD},
    "membership_add": {R.PROJECT_LEAD},
    "membership_remove": {R.PROJECT_LEAD},
    "checklist_item_update": {R.PROJECT_LEAD, OWNER},
    "checklist_item_assign": {R.PROJECT_LEAD, OWNER},
    "evidence_add_file": CONTRIBUTORS,
    "evidence_add_link": CONTRIBUTORS,
    "evidence_add_note": CONTRIBUTORS,
    "evidence_withdraw": {R.PROJECT_LEAD, OWNER},
    "evidence_record_download": set(Role),
    "comment_add": set(Role) - {R.AUDITOR},
    "gate_submit": {R.PROJECT_LEAD},
    "gate_evidence_designate": {R.PROJECT_LEAD},
    "signoff_create": set(Role) - {R.AUDITOR},
    "gate_start_review_cycle": {R.COMMITTEE_CHAIR},
    "model_version_create": {R.PROJECT_LEAD, R.DATA_STEWARD},
    "evaluation_run_start": {R.PROJECT_LEAD, R.DATA_STEWARD},
    "gate_criterion_create": {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
    "gate_criterion_update": {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
    "gate_criterion_delete": {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
    "dataset_version_create": {R.PROJECT_LEAD, R.DATA_STEWARD},
    "model_facts_update": {R.PROJECT_LEAD},
    "report_request": {R.COMPLIANCE_OFFICER, R.COMMITTEE_CHAIR, R.AUDITOR},
    "report_download": {R.COMPLIANCE_OFFICER, R.COMMITTEE_CHAIR, R.AUDITOR},
    "monitoring_plan_save": {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
    "monitoring_batch_submit": {R.PROJECT_LEAD, R.DATA_STEWARD},
    "incident_report": set(Role) - {R.AUDITOR},
    "incident_update": {R.PROJECT_LEAD, R.CLINICAL_SAFETY_OFFICER, R.COMMITTEE_CHAIR},
    "incident_note_add": set(Role) - {R.AUDITOR},
    "feedback_submit": set(Role) - {R.AUDITOR},
}
# Services guarded by a global (not per-project) permission; tested in their own modules.
GLOBAL_SERVICES = {
    "project_create",
    "checklist_template_create_version",
    "checklist_template_activate",
    "template_item_save",
    "template_item_delete",
    "user_create",
    "user_update",
    "user_set_password",
    "signoff_policy_create_version",
    "signoff_policy_activate",
    "signoff_requirement_save",
    "signoff_requirement_delete",
    "otp_device_save",
    "otp_device_delete",
    "api_token_create",
    "api_token_revoke",
    "audit_export",  # a project's trail (view_audit) or the global one; tests/audits
}


def _settle(team, phase):
    for item in team.project.checklist_items.filter(phase=phase):
        if item.evidence_required:
            checklist_services.evidence_add_note(actor=team.creator, item=item, note="Evidence.")
        checklist_services.checklist_item_update(actor=team.creator, item=item, status="done")


def _gate(team, phase=Phase.PLANNING) -> Gate:
    return team.project.gates.get(phase=phase)


def _in_review(team) -> Gate:
    _settle(team, Phase.PLANNING)
    return gate_services.gate_submit(actor=team.creator, gate=_gate(team))


def _item(team, owner_role) -> ChecklistItem:
    return team.project.checklist_items.filter(phase=Phase.PLANNING, owner_role=owner_role).first()


BASELINE = b"".join(
    json.dumps(
        {
            "id": f"r{i}",
            "label": i % 2,
            "score": 0.2 + 0.6 * (i % 2),
            "groups": {"sex": "FM"[i % 2]},
        }
    ).encode()
    + b"\n"
    for i in range(40)
)


def _deployed(team) -> MonitoringPlan:
    """A deployed project (every gate before monitoring approved) whose development evidence
    run is the baseline of a weekly plan: built directly, the matrix tests permission only."""
    project = team.project
    model, dataset = make_versions(team, purpose="validation", rows=40)
    development = _gate(team, Phase.DEVELOPMENT)
    run = EvaluationRun.objects.create(
        project=project,
        number=1,
        gate=development,
        model_version=model,
        dataset_version=dataset,
        file=ContentFile(BASELINE, name="baseline.jsonl"),
        original_name="baseline.jsonl",
        size=len(BASELINE),
        sha256=hashlib.sha256(BASELINE).hexdigest(),
        status="succeeded",
        n_records=40,
        requested_by=team.creator,
    )
    run.results.create(metric="auroc", scope="overall", value=1.0, ci_low=1.0, ci_high=1.0, n=40)
    project.gates.exclude(phase=Phase.MONITORING).update(state=Gate.State.APPROVED)
    project.gates.filter(phase=Phase.MONITORING).update(state=Gate.State.OPEN)
    development.evidence_runs.add(run)
    today = timezone.localdate()
    return MonitoringPlan.objects.create(
        project=project,
        baseline_run=run,
        metrics=["auroc"],
        starts_on=today - datetime.timedelta(days=14),
        created_by=team.creator,
        updated_by=team.creator,
    )


def _approved_monitoring(team) -> Gate:
    for phase in Phase:
        _settle(team, phase)
        gate_services.gate_submit(actor=team.creator, gate=_gate(team, phase))
        approve(team, _gate(team, phase))
    return _gate(team, Phase.MONITORING)


def _arguments(service: str, team, owner_role, actor_role=None) -> dict:
    """Valid arguments for `service` on `team`'s project (state prepared by the lead)."""
    project = team.project
    item = _item(team, owner_role)
    if service == "project_update":
        return {"project": project, "name": "Renamed project"}
    if service == "membership_add":
        return {"project": project, "user": UserFactory(), "role": R.COMMITTEE_MEMBER}
    if service == "membership_remove":
        return {"membership": Membership.objects.get(user=team[R.COMMITTEE_MEMBER])}
    if service == "checklist_item_update":
        return {"item": item, "status": "in_progress"}
    if service == "checklist_item_assign":
        return {"item": item, "assignee": team[R.DATA_STEWARD]}
    if service == "evidence_add_file":
        return {"item": item, "upload": SimpleUploadedFile("plan.txt", b"plan")}
    if service == "evidence_add_link":
        return {"item": item, "url": "https://intranet.example.org/dpia"}
    if service == "evidence_add_note":
        return {"item": item, "note": "Reviewed at the privacy board."}
    if service == "evidence_withdraw":
        evidence = checklist_services.evidence_add_note(actor=team.creator, item=item, note="Draft")
        return {"evidence": evidence, "reason": "Wrong item"}
    if service == "evidence_record_download":
        upload = SimpleUploadedFile("dpia.txt", b"dpia")
        evidence = checklist_services.evidence_add_file(
            actor=team.creator, item=item, upload=upload
        )
        return {"evidence": evidence}
    if service == "comment_add":
        return {"item": item, "body": "Looks complete."}
    if service == "gate_submit":
        _settle(team, Phase.PLANNING)
        return {"gate": _gate(team)}
    if service == "signoff_create":
        return {
            "gate": _in_review(team),
            "role": actor_role if actor_role in Role.values else R.COMMITTEE_MEMBER,
            "meaning": "review",
            "password": PASSWORD,
        }
    if service == "gate_start_review_cycle":
        return {"gate": _approved_monitoring(team)}
    if service == "gate_evidence_designate":
        model, dataset = make_versions(team, rows=1)
        gate = _in_review(team)
        run = EvaluationRun.objects.create(
            project=project,
            number=1,
            gate=gate,
            model_version=model,
            dataset_version=dataset,
            file="evaluations/r.jsonl",
            original_name="r.jsonl",
            size=1,
            sha256="d" * 64,
            status="succeeded",
            n_records=1,
            requested_by=team.creator,
        )
        return {"gate": gate, "evidence_runs": [run], "reason": "The corrected labels."}
    if service == "evaluation_run_start":
        model, dataset = make_versions(team, rows=1)
        return {
            "gate": _gate(team),
            "model_version": model,
            "dataset_version": dataset,
            "upload": SimpleUploadedFile("r.jsonl", b'{"id": "a", "label": 1, "score": 0.9}\n'),
            "metrics": ["auroc"],
        }
    if service == "gate_criterion_create":
        return {"gate": _gate(team), "metric": "auroc", "comparator": ">=", "threshold": 0.8}
    if service in {"gate_criterion_update", "gate_criterion_delete"}:
        existing = gate_services.gate_criterion_create(
            actor=team[R.COMMITTEE_CHAIR],
            gate=_gate(team),
            metric="auroc",
            comparator=">=",
            threshold=0.8,
        )
        return {"criterion": existing, **({"threshold": 0.9} if "update" in service else {})}
    if service == "model_version_create":
        return {
            "project": project,
            "label": "v1",
            "base_model": "Llama 3.1 8B",
            "adaptation": "lora",
        }
    if service == "dataset_version_create":
        return {
            "project": project,
            "label": "test-2026",
            "purpose": "test",
            "row_count": 100,
            "sha256": "a" * 64,
        }
    if service == "model_facts_update":
        return {"project": project, "changes": {"developer": "The hospital's AI team"}}
    if service == "report_request":
        return {"project": project, "kind": "hti1"}
    if service == "report_download":
        with system_context("tests"):
            report = report_services.report_request(
                actor=None, project=project, kind="hti1", run_job=False
            )
            report_services.report_generate(report.pk)
        return {"report": Report.objects.get(pk=report.pk)}
    if service == "monitoring_plan_save":
        plan = _deployed(team)
        return {
            "project": project,
            "baseline_run": plan.baseline_run,
            "metrics": ["auroc"],
            "cohorts": [],
            "starts_on": plan.starts_on,
            "review_interval_days": 30,
        }
    if service == "monitoring_batch_submit":
        plan = _deployed(team)
        return {
            "project": project,
            "upload": SimpleUploadedFile("week.jsonl", BASELINE),
            "period_start": plan.starts_on,
        }
    if service == "incident_report":
        return {"project": project, "title": "Wrong dose in a summary", "severity": "moderate"}
    if service in {"incident_update", "incident_note_add"}:
        incident = monitoring_services.incident_report(
            actor=team.creator, project=project, title="Wrong dose in a summary"
        )
        if service == "incident_update":
            return {"incident": incident, "status": "investigating"}
        return {"incident": incident, "text": "The pharmacist confirmed it."}
    if service == "feedback_submit":
        return {"project": project, "source": "clinician", "category": "usability", "rating": 4}
    raise AssertionError(f"no arguments declared for {service}")


def _snapshot(project: Project) -> tuple:
    """Everything a service could change, to prove a refused call changed nothing (and the
    audit trail, which every call that is let through extends)."""
    return (
        AuditEvent.objects.count(),
        Project.objects.filter(pk=project.pk).values_list("name", "risk_tier").get(),
        sorted(Membership.objects.filter(project=project).values_list("user", "role")),
        sorted(project.checklist_items.values_list("id", "status", "assignee", "justification")),
        sorted(Evidence.objects.values_list("id", "withdrawn_at")),
        Comment.objects.count(),
        Signature.objects.count(),
        sorted(project.gates.values_list("phase", "state", "review_round", "cycle")),
        ModelVersion.objects.count(),
        DatasetVersion.objects.count(),
        EvaluationRun.objects.count(),
        sorted(GateCriterion.objects.values_list("id", "threshold")),
        Report.objects.count(),
        list(ModelFacts.objects.order_by("pk").values_list("project", "facts")),
        list(MonitoringPlan.objects.order_by("pk").values_list("review_interval_days")),
        MonitoringBatch.objects.count(),
        sorted(Incident.objects.values_list("id", "status", "severity")),
        IncidentEvent.objects.count(),
        Feedback.objects.count(),
    )


ROLES_AND_OUTSIDER = [*Role, "outsider"]
CASES = [(service, actor) for service in POLICY for actor in ROLES_AND_OUTSIDER]


@pytest.mark.parametrize(("service", "actor"), CASES)
def test_permission_matrix(service, actor):
    # Item-level services act on an item owned by the privacy officer, so OWNER is a role of
    # its own in the matrix and not the lead's.
    owner_role = R.PRIVACY_OFFICER
    team = make_team()
    kwargs = _arguments(service, team, owner_role, actor)
    user = team.outsider if actor == "outsider" else team[actor]
    allowed = actor != "outsider" and (
        actor in POLICY[service] or (OWNER in POLICY[service] and actor == owner_role)
    )
    function = find_service(service)
    before = _snapshot(team.project)
    if allowed:
        function(actor=user, **kwargs)
        assert _snapshot(team.project) != before, f"{service} by {actor} changed nothing"
    else:
        with pytest.raises(PermissionDenied):
            function(actor=user, **kwargs)
        assert _snapshot(team.project) == before


def test_every_service_is_in_the_policy_table():
    declared = set(POLICY) | GLOBAL_SERVICES
    discovered = set(all_services())
    assert discovered - declared == set(), "declare who may call the new service"
    assert declared - discovered == set(), "the policy lists a service that is gone"


def test_outsiders_cannot_even_see_the_project(db):
    team = make_team()
    assert not team.outsider.has_perm("governance.view_project", team.project)
    for role in Role:
        assert team[role].has_perm("governance.view_project", team.project)
