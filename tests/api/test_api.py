"""The REST API as a dev team's pipeline uses it: tokens, errors, uploads, idempotency,
attribution, query counts."""

import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits.models import AuditEvent
from demo.records import binary_classifier
from governance.models import ApiToken
from governance.roles import Role
from governance.services import api_token_revoke
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import Evidence
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.gates import services as gate_services
from tests.api.helpers import client_for
from tests.factories import PASSWORD, make_team, settle

pytestmark = pytest.mark.django_db

API = "/api/v1"


def project_url(team, path=""):
    return f"{API}/projects/{team.project.slug}/{path}"


def versions(team, client):
    client.post(
        project_url(team, "model-versions/"),
        {"label": "v1", "base_model": "Llama 3.1 8B", "adaptation": "lora"},
        format="json",
    )
    client.post(
        project_url(team, "dataset-versions/"),
        {"label": "test", "purpose": "test", "row_count": 400, "sha256": "a" * 64},
        format="json",
    )


def upload(client, team, data=None, **extra):
    data = data or binary_classifier(seed=1, n=400, prevalence=0.3, separation=1.5)
    return client.post(
        project_url(team, "evaluation-runs/"),
        {
            "file": SimpleUploadedFile("records.jsonl", data),
            "gate": "planning",
            "model_version": "v1",
            "dataset_version": "test",
            "metrics": "auroc,recall",
            "resamples": "100",
        },
        format="multipart",
        **extra,
    )


def test_a_token_reaches_the_projects_of_its_user(team):
    other = make_team()
    client = client_for(team[Role.AUDITOR])
    body = client.get(f"{API}/projects/").json()
    assert [p["slug"] for p in body["results"]] == [team.project.slug]
    assert client.get(f"{API}/projects/{other.project.slug}/").status_code == 404


def test_bad_missing_expired_and_revoked_tokens_are_refused(team):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    response = anonymous.get(f"{API}/projects/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer lgv_nonsense")
    assert anonymous.get(f"{API}/projects/").status_code == 401
    user = team[Role.AUDITOR]
    client = client_for(user, expires_at=timezone.now() + datetime.timedelta(seconds=1))
    ApiToken.objects.filter(user=user).update(expires_at=timezone.now())
    assert client.get(f"{API}/projects/").status_code == 401
    client = client_for(user)
    api_token_revoke(actor=user, token=ApiToken.objects.filter(user=user).latest("id"))
    assert client.get(f"{API}/projects/").status_code == 401


def test_a_read_only_token_cannot_write(team):
    client = client_for(team.creator, read_only=True)
    assert client.get(project_url(team)).status_code == 200
    response = client.patch(project_url(team), {"name": "Renamed"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This API token is read-only."


def test_a_project_limited_token_sees_only_its_projects(team):
    second = make_team()
    from governance.services import membership_add

    membership_add(actor=second.creator, project=second.project, user=team.creator, role="auditor")
    client = client_for(team.creator, projects=[second.project])
    slugs = [p["slug"] for p in client.get(f"{API}/projects/").json()["results"]]
    assert slugs == [second.project.slug]
    assert client.get(project_url(team)).status_code == 404


def test_errors_share_one_body_with_fields(team):
    client = client_for(team.creator)
    response = client.post(
        project_url(team, "dataset-versions/"),
        {"label": "x", "purpose": "weekly", "row_count": -1, "sha256": "nope"},
        format="json",
    )
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid"
    assert set(error["fields"]) == {"purpose", "row_count"}
    response = client.post(
        project_url(team, "dataset-versions/"),
        {"label": "x", "purpose": "test", "row_count": 1, "sha256": "nope"},
        format="json",
    )
    assert response.json()["error"]["fields"]["sha256"] == [
        "A SHA-256 is 64 lower-case hexadecimal characters."
    ]
    response = client_for(team[Role.AUDITOR]).post(
        project_url(team, "model-versions/"),
        {"label": "v9", "base_model": "x", "adaptation": "rag"},
        format="json",
    )
    assert response.status_code == 403
    assert (
        "not allowed to register model and dataset versions" in response.json()["error"]["message"]
    )


def test_a_refused_records_file_names_line_and_field_and_stores_nothing(team):
    client = client_for(team[Role.DATA_STEWARD])
    versions(team, client)
    bad = b'{"id": "a", "label": 1, "score": 0.2}\n{"id": "b", "label": 0, "score": 7}\n'
    response = upload(client, team, bad)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["line"], error["field"]) == ("invalid_records", 2, "score")
    assert not EvaluationRun.objects.exists()


def test_an_upload_answers_202_and_the_run_can_be_polled(team, in_process_tasks):
    client = client_for(team[Role.DATA_STEWARD])
    versions(team, client)
    response = upload(client, team)
    assert response.status_code == 202
    run = response.json()
    assert response["Location"] == run["url"]
    polled = client.get(run["url"]).json()
    assert polled["id"] == run["id"] and polled["status"] in {"queued", "succeeded"}
    assert polled["sha256"] == run["sha256"]
    # (On-commit enqueue does not fire inside a test transaction; the job is run here.)
    from lifecycle.evaluations.tasks import run_evaluation

    run_evaluation.apply(args=[run["id"]])
    done = client.get(run["url"]).json()
    assert done["status"] == "succeeded"
    assert {r["metric"] for r in done["results"]} >= {"auroc", "recall"}
    assert done["provenance"]["input_sha256"] == run["sha256"]
    listed = client.get(project_url(team, "evaluation-runs/?status=succeeded&gate=planning"))
    assert [r["id"] for r in listed.json()["results"]] == [run["id"]]


def test_an_idempotency_key_replays_the_first_response(team):
    client = client_for(team[Role.DATA_STEWARD])
    versions(team, client)
    first = upload(client, team, HTTP_IDEMPOTENCY_KEY="pipeline-42")
    again = upload(client, team, HTTP_IDEMPOTENCY_KEY="pipeline-42")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert EvaluationRun.objects.count() == 1
    assert AuditEvent.objects.filter(action="evaluation_run.start").count() == 1
    elsewhere = client.post(
        project_url(team, "items/planning.defining-scope/evidence/"),
        {"kind": "note", "note": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="pipeline-42",
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["error"]["code"] == "idempotency_key_reused"
    # A refused request is not remembered: fixing it and retrying with the key works.
    bad = upload(client, team, b'{"id": 1}\n', HTTP_IDEMPOTENCY_KEY="pipeline-43")
    assert bad.status_code == 400
    assert upload(client, team, HTTP_IDEMPOTENCY_KEY="pipeline-43").status_code == 202


def test_evidence_upload_is_idempotent_and_download_is_recorded(team):
    client = client_for(team[Role.PRIVACY_OFFICER])
    url = project_url(team, "items/planning.data-privacy-plan/evidence/")
    item = team.project.checklist_items.get(key="planning.data-privacy-plan")
    payload = {"kind": "file", "title": "DPIA", "file": SimpleUploadedFile("dpia.txt", b"dpia")}
    response = client.post(url, payload, format="multipart", HTTP_IDEMPOTENCY_KEY="dpia-1")
    assert response.status_code == 201, response.json()
    payload["file"] = SimpleUploadedFile("dpia.txt", b"dpia")
    client.post(url, payload, format="multipart", HTTP_IDEMPOTENCY_KEY="dpia-1")
    assert Evidence.objects.filter(item=item).count() == 1
    evidence = response.json()
    download = client_for(team[Role.AUDITOR]).get(evidence["download_url"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"dpia"
    assert download["X-Content-SHA256"] == evidence["sha256"]
    assert AuditEvent.objects.filter(action="evidence.download").count() == 1


def test_requests_are_attributed_to_the_user_and_the_token(team):
    client = client_for(team.creator)
    client.post(
        project_url(team, "items/planning.defining-scope/comments/"),
        {"body": "From the pipeline."},
        format="json",
    )
    event = AuditEvent.objects.filter(action="comment.add").get()
    token = ApiToken.objects.filter(user=team.creator).latest("id")
    assert (event.actor_type, event.actor_user, event.actor_token_id) == (
        "token",
        team.creator,
        token.pk,
    )
    assert event.request_id


def test_checklist_items_filter_and_update(team):
    client = client_for(team.creator)
    items = client.get(project_url(team, "items/?phase=planning&status=not_started")).json()
    assert items["count"] == 7
    key = items["results"][0]["key"]
    response = client.patch(
        project_url(team, f"items/{key}/"),
        {
            "status": "not_applicable",
            "justification": "Covered elsewhere.",
            "assignee": team[Role.CLINICAL_LEAD].username,
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (
        body["status"] == "not_applicable"
        and body["assignee"]["username"] == team[Role.CLINICAL_LEAD].username
    )
    refused = client.patch(
        project_url(team, f"items/{key}/"),
        {"status": "not_applicable", "justification": ""},
        format="json",
    )
    assert refused.status_code == 400 and "justification" in refused.json()["error"]["fields"]


def test_signing_over_the_api_needs_the_password(team):
    settle(team, "planning")
    gate_services.gate_submit(actor=team.creator, gate=team.project.gates.get(phase="planning"))
    client = client_for(team[Role.COMMITTEE_CHAIR])
    url = project_url(team, "gates/planning/signoffs/")
    wrong = client.post(
        url, {"role": "committee_chair", "meaning": "approve", "password": "x"}, format="json"
    )
    assert wrong.status_code == 403 and "nothing was signed" in wrong.json()["error"]["message"]
    right = client.post(
        url, {"role": "committee_chair", "meaning": "approve", "password": PASSWORD}, format="json"
    )
    assert right.status_code == 201
    signature = right.json()
    assert signature["manifestation"].startswith(team[Role.COMMITTEE_CHAIR].get_full_name())
    gate = client.get(project_url(team, "gates/planning/")).json()
    assert gate["conditions"]["approvals"] == {
        "committee_chair": [team[Role.COMMITTEE_CHAIR].username]
    }
    assert "clinical_lead" in gate["conditions"]["missing_roles"]
    assert [s["id"] for s in gate["conditions"]["signatures"]] == [signature["id"]]


def test_gate_detail_lists_invalidated_signatures_with_their_cause(team):
    from tests.factories import pass_gate

    pass_gate(team, "planning")
    item = team.project.checklist_items.filter(phase="planning").first()
    checklist_services.evidence_add_note(actor=team.creator, item=item, note="Late addendum.")
    gate = client_for(team[Role.AUDITOR]).get(project_url(team, "gates/planning/")).json()
    assert gate["state"] == "in_review" and gate["reopened_reason"]
    invalidated = gate["conditions"]["invalidated_signatures"]
    assert invalidated and all(
        s["invalidated_by"]["kind"] == "invalidated"
        and "Late addendum" in s["invalidated_by"]["cause"]
        for s in invalidated
    )


def test_audit_events_need_the_audit_permission_and_export_verifies(team):
    from audits.chain import verify_export

    assert (
        client_for(team[Role.COMMITTEE_MEMBER]).get(project_url(team, "audit-events/")).status_code
        == 403
    )
    client = client_for(team[Role.AUDITOR])
    events = client.get(project_url(team, "audit-events/?action=membership.add")).json()
    assert events["count"] == 9 and events["results"][0]["action"] == "membership.add"
    export = client.get(project_url(team, "audit-events/export/"))
    assert export["Content-Type"] == "application/x-ndjson"
    _, result = verify_export(export.content.decode().splitlines())
    assert result.problem is None


@pytest.mark.parametrize(
    ("path", "make"),
    [
        ("items/", None),
        ("memberships/", "members"),
        ("model-versions/", "models"),
        ("evaluation-runs/", "runs"),
        ("audit-events/", "events"),
    ],
)
def test_list_query_counts_do_not_grow_with_the_objects(team, path, make):
    client = client_for(team.creator)

    def grow(n):
        from governance.services import membership_add
        from tests.factories import UserFactory

        for i in range(n):
            if make == "members":
                membership_add(
                    actor=team.creator,
                    project=team.project,
                    user=UserFactory(),
                    role="committee_member",
                )
            elif make == "models":
                evaluation_services.model_version_create(
                    actor=team.creator,
                    project=team.project,
                    label=f"m{i}-{timezone.now().timestamp()}",
                    base_model="b",
                    adaptation="rag",
                )
            elif make == "runs":
                _make_run(team, i)
            elif make == "events":
                checklist_services.comment_add(
                    actor=team.creator, item=team.project.checklist_items.first(), body="x"
                )

    def count():
        with CaptureQueriesContext(connection) as queries:
            assert client.get(project_url(team, path) + "?page_size=500").status_code == 200
        return len(queries)

    client.get(project_url(team, path))  # the token's first use of the minute records it
    grow(10)
    few = count()
    grow(190)
    assert count() == few


def _make_run(team, i):
    if not team.project.model_versions.exists():
        evaluation_services.model_version_create(
            actor=team.creator, project=team.project, label="v1", base_model="b", adaptation="rag"
        )
        evaluation_services.dataset_version_create(
            actor=team.creator,
            project=team.project,
            label="d1",
            purpose="test",
            row_count=1,
            sha256="c" * 64,
        )
    evaluation_services.evaluation_run_start(
        actor=team.creator,
        gate=team.project.gates.first(),
        model_version=team.project.model_versions.first(),
        dataset_version=team.project.dataset_versions.first(),
        upload=SimpleUploadedFile("r.jsonl", b'{"id": "a", "label": 1, "score": 0.5}\n'),
        metrics=["auroc"],
    )


def test_each_token_has_its_own_request_budget(team, settings):
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api": "3/min"},
    }
    from rest_framework.settings import api_settings

    api_settings.reload()
    try:
        from governance.api.authentication import TokenRateThrottle

        TokenRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        busy, quiet = client_for(team.creator), client_for(team.creator)
        codes = [busy.get(f"{API}/projects/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert busy.get(f"{API}/projects/").json()["error"]["code"] == "throttled"
        assert quiet.get(f"{API}/projects/").status_code == 200
    finally:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"api": "1200/min"},
        }
        api_settings.reload()
        TokenRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        cache.clear()
