"""The evidence rules over the API: coverage refusals, declared subsets, fit warnings before
anything is stored (`check_only`), designating the evidence at submission and changing it in
review, and who acts next."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audits.models import Action, AuditEvent
from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from tests.api.helpers import client_for
from tests.factories import make_team, make_versions, settle

pytestmark = pytest.mark.django_db

API = "/api/v1"


def url(team, path=""):
    return f"{API}/projects/{team.project.slug}/{path}"


def post_records(client, team, n=400, **fields):
    return client.post(
        url(team, "evaluation-runs/"),
        {
            "file": SimpleUploadedFile(
                "records.jsonl", binary_classifier(seed=n, n=n, prevalence=0.3, separation=1.5)
            ),
            "gate": "planning",
            "model_version": "v1",
            "dataset_version": "d1",
            "metrics": "auroc,recall",
            "resamples": "100",
            **fields,
        },
        format="multipart",
    )


@pytest.fixture
def team():
    team = make_team()
    make_versions(team, rows=400)
    gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=team.project.gates.get(phase="planning"),
        metric="ece",
        comparator="<=",
        threshold=0.2,
    )
    return team


def test_a_file_not_covering_its_dataset_version_is_a_400_naming_both_counts(team):
    response = post_records(client_for(team[Role.DATA_STEWARD]), team, n=300)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "300 records" in error["fields"]["file"][0]
    assert "400 rows" in error["fields"]["file"][0]
    assert not EvaluationRun.objects.exists()


def test_a_declared_subset_is_accepted_and_marked(team):
    response = post_records(
        client_for(team[Role.DATA_STEWARD]), team, n=300, subset_reason="Labelled notes only."
    )
    assert response.status_code == 202
    assert response.json()["subset_reason"] == "Labelled notes only."


def test_check_only_answers_the_warnings_and_stores_nothing(team):
    client = client_for(team[Role.DATA_STEWARD])
    requirements = client.get(url(team, "gates/planning/")).json()["conditions"]["requirements"]
    assert requirements[0]["metric"] == "ece"
    checked = post_records(client, team, check_only="true")
    assert checked.status_code == 200
    body = checked.json()
    assert body["n_records"] == 400
    assert len(body["warnings"]) == 1 and "needs the metric ece" in body["warnings"][0]
    assert not EvaluationRun.objects.exists()
    stored = post_records(client, team)
    assert stored.status_code == 202
    assert "needs the metric ece" in stored.json()["warnings"][0]
    assert stored.json()["number"] == 1


def test_submission_designates_runs_and_the_lead_changes_them_with_a_reason(team):
    steward, lead = client_for(team[Role.DATA_STEWARD]), client_for(team.creator)
    ids = []
    for _ in range(2):
        run_id = post_records(steward, team, metrics="auroc,recall,ece").json()["id"]
        run_evaluation.apply(args=[run_id])
        ids.append(run_id)
    settle(team, "planning")
    submitted = lead.post(
        url(team, "gates/planning/submit/"), {"evidence_runs": [ids[0]]}, format="json"
    )
    assert submitted.status_code == 200, submitted.json()
    conditions = lead.get(url(team, "gates/planning/")).json()["conditions"]
    assert conditions["evidence"]["designated"] is True
    assert [r["id"] for r in conditions["evidence"]["runs"]] == [ids[0]]
    assert conditions["evidence"]["newer_run"]["id"] == ids[1]
    assert conditions["next_action"].startswith("waiting for: ")

    refused = lead.post(url(team, "gates/planning/evidence/"), {"evidence_runs": [ids[1]]})
    assert refused.status_code == 400
    assert "reason" in refused.json()["error"]["fields"]
    unknown = lead.post(
        url(team, "gates/planning/evidence/"),
        {"evidence_runs": [999999], "reason": "typo"},
        format="json",
    )
    assert unknown.status_code == 400
    assert "999999" in unknown.json()["error"]["fields"]["evidence_runs"][0]
    changed = lead.post(
        url(team, "gates/planning/evidence/"),
        {"evidence_runs": [ids[1]], "reason": "The corrected labels."},
        format="json",
    )
    assert changed.status_code == 200
    assert AuditEvent.objects.filter(action=Action.GATE_EVIDENCE_DESIGNATE).count() == 1
    chair = client_for(team[Role.COMMITTEE_CHAIR])
    forbidden = chair.post(
        url(team, "gates/planning/evidence/"),
        {"evidence_runs": [ids[0]], "reason": "I prefer it."},
        format="json",
    )
    assert forbidden.status_code == 403


def test_the_run_detail_judges_the_run_by_the_gate_criteria(team):
    steward = client_for(team[Role.DATA_STEWARD])
    run_id = post_records(steward, team, metrics="auroc,recall,ece").json()["id"]
    run_evaluation.apply(args=[run_id])
    body = steward.get(url(team, f"evaluation-runs/{run_id}/")).json()
    [verdict] = body["verdicts"]
    assert verdict["expression"] == "ece <= 0.2"
    assert verdict["verdict"] in ("pass", "fail")
    assert verdict["observed_text"].startswith("ece ")


def test_absurd_run_ids_are_refused_not_a_500(team, client):
    lead = client_for(team.creator)
    settle(team, "planning")
    for ids in ([10**30], [2**63], ["x"], [None], list(range(1, 200))):
        response = lead.post(
            url(team, "gates/planning/submit/"), {"evidence_runs": ids}, format="json"
        )
        assert response.status_code == 400, (ids, response.content[:200])
    client.force_login(team.creator)
    page = client.post(
        f"/projects/{team.project.slug}/gates/planning/submit/",
        {"evidence_choice": "1", "evidence_runs": [str(10**30)]},
    )
    assert page.status_code == 400
    assert "Not a succeeded run of this gate" in page.content.decode()
