"""Every endpoint in the OpenAPI schema × method × persona, against a declared policy.

The endpoints come from the schema itself, so a new endpoint that is not declared here fails
the suite. Each call runs in a rolled-back savepoint on a project prepared for it; lists must
never show another project's objects.
"""

import datetime
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from audits.context import system_context
from audits.reports import services as report_services
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate
from lifecycle.monitoring import services as monitoring_services
from tests.api.helpers import client_for
from tests.factories import PASSWORD, make_team, make_versions, settle

pytestmark = pytest.mark.django_db

R = Role
EVERYONE = set(Role)
CONTRIBUTORS = {
    R.PROJECT_LEAD,
    R.CLINICAL_LEAD,
    R.DATA_STEWARD,
    R.PRIVACY_OFFICER,
    R.CLINICAL_SAFETY_OFFICER,
    R.COMPLIANCE_OFFICER,
}
AUDIT_READERS = {
    R.PROJECT_LEAD,
    R.PRIVACY_OFFICER,
    R.CLINICAL_SAFETY_OFFICER,
    R.COMPLIANCE_OFFICER,
    R.COMMITTEE_CHAIR,
    R.AUDITOR,
}
ITEM = "planning.data-privacy-plan"  # owned by the privacy officer


@dataclass
class Call:
    """How to call an endpoint on a prepared team: the URL, the body, its format."""

    path: str
    data: dict | None = None
    format: str = "json"


def _run(team):
    make_versions(team, rows=1)
    return evaluation_services.evaluation_run_start(
        actor=team.creator,
        gate=team.project.gates.first(),
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=SimpleUploadedFile("r.jsonl", b'{"id": "a", "label": 1, "score": 0.9}\n'),
        metrics=["auroc"],
    )


def _evidence(team):
    item = team.project.checklist_items.get(key=ITEM)
    return checklist_services.evidence_add_file(
        actor=team.creator, item=item, upload=SimpleUploadedFile("e.txt", b"evidence")
    )


def _in_review(team):
    settle(team, "planning")
    gate_services.gate_submit(actor=team.creator, gate=team.project.gates.get(phase="planning"))


def _criterion(team):
    return gate_services.gate_criterion_create(
        actor=team[R.COMMITTEE_CHAIR],
        gate=team.project.gates.first(),
        metric="auroc",
        comparator=">=",
        threshold=0.8,
    )


EXPORTERS = {R.COMPLIANCE_OFFICER, R.COMMITTEE_CHAIR, R.AUDITOR}
PUBLIC = "public"  # no login needed: the report key that verifies reports


def _report(team):
    """A ready report of the team's project, generated the way `export_report` does."""
    with system_context("tests"):
        report = report_services.report_request(
            actor=None, project=team.project, kind="hti1", run_job=False
        )
        report_services.report_generate(report.pk)
    return report


def _p(team, rest=""):
    return f"/api/v1/projects/{team.project.slug}/{rest}"


def _succeeded_run_in_review(team):
    """A succeeded run of the planning gate, which went into review before it succeeded (so
    without evidence)."""
    run = _run(team)
    _in_review(team)
    EvaluationRun.objects.filter(pk=run.pk).update(status="succeeded", n_records=1)
    run.refresh_from_db()
    return run


def _records():
    return SimpleUploadedFile("r.jsonl", b'{"id": "a", "label": 1, "score": 0.9}\n')


INCIDENT_MANAGERS = {R.PROJECT_LEAD, R.CLINICAL_SAFETY_OFFICER, R.COMMITTEE_CHAIR}


def _monitored(team):
    """The project as far as monitoring needs it, in a few writes: every gate approved but the
    monitoring gate (open), the development gate's evidence a succeeded run with a result, and
    a weekly plan started two weeks ago with its first batch. Returns the plan."""
    project = team.project
    Gate.objects.filter(project=project).exclude(phase="monitoring").update(state="approved")
    Gate.objects.filter(project=project, phase="monitoring").update(state="open")
    development = project.gates.get(phase="development")
    make_versions(team, rows=1)
    run = evaluation_services.evaluation_run_start(
        actor=team.creator,
        gate=development,
        model_version=project.model_versions.get(),
        dataset_version=project.dataset_versions.get(),
        upload=_records(),
        metrics=["auroc"],
    )
    EvaluationRun.objects.filter(pk=run.pk).update(status="succeeded", n_records=1)
    EvaluationResult.objects.create(run=run, metric="auroc", scope="overall", value=0.9, n=1)
    development.evidence_runs.add(run)
    plan = monitoring_services.monitoring_plan_save(
        actor=team[R.COMMITTEE_CHAIR],
        project=project,
        baseline_run=run,
        metrics=["auroc"],
        cohorts=[],
        starts_on=timezone.localdate() - datetime.timedelta(days=14),
    )
    monitoring_services.monitoring_batch_submit(
        actor=team.creator, project=project, upload=_records(), period_start=plan.starts_on
    )
    return plan


def _incident(team):
    return monitoring_services.incident_report(
        actor=team.creator, project=team.project, title="Missed flag"
    )


# (schema path, method) -> (roles allowed, how to call it). `None` roles: no project role
# suffices (a global permission is needed), so every persona is refused.
POLICY: dict[tuple[str, str], tuple[set | str | None, Callable]] = {
    ("/api/v1/projects/", "get"): (EVERYONE, lambda t: Call("/api/v1/projects/")),
    ("/api/v1/projects/", "post"): (
        None,
        lambda t: Call(
            "/api/v1/projects/",
            {
                "name": "X",
                "slug": "x-project",
                "clinical_setting": "ED",
                "intended_use": "u",
                "intended_users": "nurses",
                "task_category": "diagnostic_support",
                "risk_tier": "low",
            },
        ),
    ),
    ("/api/v1/projects/{slug}/", "get"): (EVERYONE, lambda t: Call(_p(t))),
    ("/api/v1/projects/{slug}/", "patch"): ({R.PROJECT_LEAD}, lambda t: Call(_p(t), {"name": "Y"})),
    ("/api/v1/projects/{slug}/audit-events/", "get"): (
        AUDIT_READERS,
        lambda t: Call(_p(t, "audit-events/")),
    ),
    ("/api/v1/projects/{slug}/audit-events/export/", "get"): (
        AUDIT_READERS,
        lambda t: Call(_p(t, "audit-events/export/")),
    ),
    ("/api/v1/projects/{slug}/model-facts/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "model-facts/")),
    ),
    ("/api/v1/projects/{slug}/model-facts/", "patch"): (
        {R.PROJECT_LEAD},
        lambda t: Call(_p(t, "model-facts/"), {"facts": {"developer": "The AI team"}}),
    ),
    ("/api/v1/projects/{slug}/reports/", "get"): (EXPORTERS, lambda t: Call(_p(t, "reports/"))),
    ("/api/v1/projects/{slug}/reports/", "post"): (
        EXPORTERS,
        lambda t: Call(_p(t, "reports/"), {"kind": "hti1"}),
    ),
    ("/api/v1/projects/{slug}/reports/{id}/", "get"): (
        EXPORTERS,
        lambda t: Call(_p(t, f"reports/{_report(t).pk}/")),
    ),
    ("/api/v1/projects/{slug}/reports/{id}/download/", "get"): (
        EXPORTERS,
        lambda t: Call(_p(t, f"reports/{_report(t).pk}/download/")),
    ),
    ("/api/v1/report-key/", "get"): (PUBLIC, lambda t: Call("/api/v1/report-key/")),
    ("/api/v1/projects/{slug}/dataset-versions/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "dataset-versions/")),
    ),
    ("/api/v1/projects/{slug}/dataset-versions/", "post"): (
        {R.PROJECT_LEAD, R.DATA_STEWARD},
        lambda t: Call(
            _p(t, "dataset-versions/"),
            {"label": "d9", "purpose": "test", "row_count": 1, "sha256": "f" * 64},
        ),
    ),
    ("/api/v1/projects/{slug}/model-versions/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "model-versions/")),
    ),
    ("/api/v1/projects/{slug}/model-versions/", "post"): (
        {R.PROJECT_LEAD, R.DATA_STEWARD},
        lambda t: Call(
            _p(t, "model-versions/"), {"label": "m9", "base_model": "b", "adaptation": "rag"}
        ),
    ),
    ("/api/v1/projects/{slug}/evaluation-runs/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "evaluation-runs/")),
    ),
    ("/api/v1/projects/{slug}/evaluation-runs/", "post"): (
        {R.PROJECT_LEAD, R.DATA_STEWARD},
        lambda t: (
            make_versions(t, rows=1),
            Call(
                _p(t, "evaluation-runs/"),
                {
                    "file": _records(),
                    "gate": "planning",
                    "model_version": "v1",
                    "dataset_version": "d1",
                    "metrics": "auroc",
                },
                "multipart",
            ),
        )[1],
    ),
    ("/api/v1/projects/{slug}/evaluation-runs/{id}/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, f"evaluation-runs/{_run(t).pk}/")),
    ),
    ("/api/v1/projects/{slug}/evidence/{id}/download/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, f"evidence/{_evidence(t).pk}/download/")),
    ),
    ("/api/v1/projects/{slug}/evidence/{id}/withdraw/", "post"): (
        {R.PROJECT_LEAD, R.PRIVACY_OFFICER},
        lambda t: Call(_p(t, f"evidence/{_evidence(t).pk}/withdraw/"), {"reason": "Wrong"}),
    ),
    ("/api/v1/projects/{slug}/gates/", "get"): (EVERYONE, lambda t: Call(_p(t, "gates/"))),
    ("/api/v1/projects/{slug}/gates/{phase}/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "gates/planning/")),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "gates/planning/criteria/")),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/", "post"): (
        {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
        lambda t: Call(
            _p(t, "gates/planning/criteria/"),
            {"metric": "recall", "comparator": ">=", "threshold": 0.8},
        ),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/{id}/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, f"gates/planning/criteria/{_criterion(t).pk}/")),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/{id}/", "patch"): (
        {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
        lambda t: Call(_p(t, f"gates/planning/criteria/{_criterion(t).pk}/"), {"threshold": 0.7}),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/{id}/", "delete"): (
        {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
        lambda t: Call(_p(t, f"gates/planning/criteria/{_criterion(t).pk}/")),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/signoffs/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "gates/planning/signoffs/")),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/signoffs/", "post"): (
        EVERYONE - {R.AUDITOR},
        lambda t: (
            _in_review(t),
            Call(
                _p(t, "gates/planning/signoffs/"),
                {"role": t.acting_role, "meaning": "review", "password": PASSWORD},
            ),
        )[1],
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/evidence/", "post"): (
        {R.PROJECT_LEAD},
        lambda t: Call(
            _p(t, "gates/planning/evidence/"),
            {"evidence_runs": [_succeeded_run_in_review(t).pk], "reason": "The corrected labels."},
        ),
    ),
    ("/api/v1/projects/{slug}/gates/{phase}/submit/", "post"): (
        {R.PROJECT_LEAD},
        lambda t: (settle(t, "planning"), Call(_p(t, "gates/planning/submit/"), {}))[1],
    ),
    ("/api/v1/projects/{slug}/items/", "get"): (EVERYONE, lambda t: Call(_p(t, "items/"))),
    ("/api/v1/projects/{slug}/items/{key}/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, f"items/{ITEM}/")),
    ),
    ("/api/v1/projects/{slug}/items/{key}/", "patch"): (
        {R.PROJECT_LEAD, R.PRIVACY_OFFICER},
        lambda t: Call(_p(t, f"items/{ITEM}/"), {"status": "in_progress"}),
    ),
    ("/api/v1/projects/{slug}/items/{key}/comments/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, f"items/{ITEM}/comments/")),
    ),
    ("/api/v1/projects/{slug}/items/{key}/comments/", "post"): (
        EVERYONE - {R.AUDITOR},
        lambda t: Call(_p(t, f"items/{ITEM}/comments/"), {"body": "Fine."}),
    ),
    ("/api/v1/projects/{slug}/items/{key}/evidence/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, f"items/{ITEM}/evidence/")),
    ),
    ("/api/v1/projects/{slug}/items/{key}/evidence/", "post"): (
        CONTRIBUTORS,
        lambda t: Call(_p(t, f"items/{ITEM}/evidence/"), {"kind": "note", "note": "Reviewed."}),
    ),
    ("/api/v1/projects/{slug}/monitoring/", "get"): (
        EVERYONE,
        lambda t: (_monitored(t), Call(_p(t, "monitoring/")))[1],
    ),
    ("/api/v1/projects/{slug}/monitoring/plan/", "get"): (
        EVERYONE,
        lambda t: (_monitored(t), Call(_p(t, "monitoring/plan/")))[1],
    ),
    ("/api/v1/projects/{slug}/monitoring/plan/", "put"): (
        {R.COMMITTEE_CHAIR, R.CLINICAL_SAFETY_OFFICER},
        lambda t: Call(
            _p(t, "monitoring/plan/"),
            {
                "baseline_run": _monitored(t).baseline_run.number,
                "metrics": ["auroc"],
                "starts_on": "2026-01-05",
                "period_days": 14,
            },
        ),
    ),
    ("/api/v1/projects/{slug}/monitoring/batches/", "get"): (
        EVERYONE,
        lambda t: (_monitored(t), Call(_p(t, "monitoring/batches/")))[1],
    ),
    ("/api/v1/projects/{slug}/monitoring/batches/", "post"): (
        {R.PROJECT_LEAD, R.DATA_STEWARD},
        lambda t: Call(
            _p(t, "monitoring/batches/"),
            {
                "file": _records(),
                "period_start": (_monitored(t).starts_on + datetime.timedelta(days=7)).isoformat(),
            },
            "multipart",
        ),
    ),
    ("/api/v1/projects/{slug}/monitoring/batches/{number}/", "get"): (
        EVERYONE,
        lambda t: (_monitored(t), Call(_p(t, "monitoring/batches/1/")))[1],
    ),
    ("/api/v1/projects/{slug}/incidents/", "get"): (
        EVERYONE,
        lambda t: (_incident(t), Call(_p(t, "incidents/")))[1],
    ),
    ("/api/v1/projects/{slug}/incidents/", "post"): (
        EVERYONE - {R.AUDITOR},
        lambda t: Call(_p(t, "incidents/"), {"title": "Wrong patient summarised"}),
    ),
    ("/api/v1/projects/{slug}/incidents/{number}/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, f"incidents/{_incident(t).number}/")),
    ),
    ("/api/v1/projects/{slug}/incidents/{number}/", "patch"): (
        INCIDENT_MANAGERS,
        lambda t: Call(_p(t, f"incidents/{_incident(t).number}/"), {"status": "investigating"}),
    ),
    ("/api/v1/projects/{slug}/incidents/{number}/notes/", "post"): (
        EVERYONE - {R.AUDITOR},
        lambda t: Call(_p(t, f"incidents/{_incident(t).number}/notes/"), {"text": "Seen it."}),
    ),
    ("/api/v1/projects/{slug}/feedback/", "get"): (
        EVERYONE,
        lambda t: (
            monitoring_services.feedback_submit(
                actor=t.creator, project=t.project, source="clinician", category="accuracy"
            ),
            Call(_p(t, "feedback/")),
        )[1],
    ),
    ("/api/v1/projects/{slug}/feedback/", "post"): (
        EVERYONE - {R.AUDITOR},
        lambda t: Call(
            _p(t, "feedback/"), {"source": "patient", "category": "usability", "rating": 4}
        ),
    ),
    ("/api/v1/projects/{slug}/memberships/", "get"): (
        EVERYONE,
        lambda t: Call(_p(t, "memberships/")),
    ),
    ("/api/v1/projects/{slug}/memberships/", "post"): (
        {R.PROJECT_LEAD},
        lambda t: Call(
            _p(t, "memberships/"), {"username": t.outsider.username, "role": "committee_member"}
        ),
    ),
    ("/api/v1/projects/{slug}/memberships/{id}/", "delete"): (
        {R.PROJECT_LEAD},
        lambda t: Call(
            _p(t, f"memberships/{t.project.memberships.get(role='committee_member').pk}/")
        ),
    ),
}

PERSONAS = ["anonymous", "outsider", *Role]


def schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(path, method) for path, ops in schema["paths"].items() for method in ops}


def test_every_endpoint_in_the_schema_is_in_the_policy():
    operations = schema_operations()
    assert operations - set(POLICY) == set(), "declare who may call the new endpoint"
    assert set(POLICY) - operations == set(), "the policy names an endpoint that is gone"


@contextmanager
def rolled_back():
    """A savepoint always rolled back, marked like Django's TestCase blocks so that the
    signing service's durable transaction may run inside it."""
    atomic = transaction.atomic()
    atomic._from_testcase = True
    with atomic:
        yield
        transaction.set_rollback(True)


def expected(persona, path: str, method: str, allowed: set | str | None) -> set[int]:
    if allowed == PUBLIC:
        return {200}
    if persona == "anonymous":
        return {401}
    if persona == "outsider":
        if path == "/api/v1/projects/":
            return {200} if method == "get" else {403}
        return {404}  # an invisible project does not exist for the caller
    if allowed is not None and persona in allowed:
        return {200, 201, 202, 204}
    return {403}


@pytest.mark.parametrize(("path", "method"), sorted(POLICY))
def test_authorization_matrix(path, method):
    allowed, build = POLICY[(path, method)]
    team = make_team()
    foreign = make_team()
    evaluation_services.model_version_create(
        actor=foreign.creator,
        project=foreign.project,
        label="FOREIGN-model",
        base_model="FOREIGN",
        adaptation="rag",
    )
    outcomes = {}
    for persona in PERSONAS:
        with rolled_back():
            team.acting_role = persona if persona in Role.values else R.COMMITTEE_MEMBER
            call = build(team)
            if persona == "anonymous":
                client = APIClient()
            else:
                client = client_for(team.outsider if persona == "outsider" else team[persona])
            response = getattr(client, method)(call.path, call.data, format=call.format)
            outcomes[persona] = response.status_code
            assert response.status_code in expected(persona, path, method, allowed), (
                persona,
                response.status_code,
                getattr(response, "data", None),
            )
            if (
                method == "get"
                and response.status_code == 200
                and "json" in response["Content-Type"]
            ):
                raw = (
                    b"".join(response.streaming_content) if response.streaming else response.content
                )
                body = raw.decode()
                assert foreign.project.slug not in body and "FOREIGN" not in body
    assert len(outcomes) == len(PERSONAS)
