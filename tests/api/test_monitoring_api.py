"""The monitoring API as a deployed project's pipeline, its committee and its feedback
integration use it: the overview, the plan, batches (idempotent, checked before anything is
stored), incidents with their timeline, feedback, hostile input, and bounded query counts."""

import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audits.models import Action, AuditEvent
from governance.roles import Role
from lifecycle.evaluations.models import DatasetVersion, EvaluationRun
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.monitoring import services as monitoring_services
from lifecycle.monitoring.models import Feedback, Incident, MonitoringBatch
from lifecycle.monitoring.tasks import analyse_monitoring_batch
from lifecycle.phases import Phase
from tests.api.helpers import client_for
from tests.monitoring import classifier_records, deploy, send_batch

pytestmark = pytest.mark.django_db

API = "/api/v1"


def url(team, path=""):
    return f"{API}/projects/{team.project.slug}/{path}"


def period(plan, week: int) -> str:
    return (plan.starts_on + datetime.timedelta(days=7 * week)).isoformat()


def post_batch(client, team, plan, week, records=None, **extra):
    records = records if records is not None else classifier_records(seed=50 + week, n=200)
    return client.post(
        url(team, "monitoring/batches/"),
        {
            "file": SimpleUploadedFile(f"week-{week}.jsonl", records),
            "period_start": period(plan, week),
        },
        format="multipart",
        **extra,
    )


@pytest.fixture
def deployed(team):
    """The team's project deployed, with a weekly plan that started twelve weeks ago."""
    return deploy(team)


# --- Overview ----------------------------------------------------------------------------------


def test_the_overview_before_a_plan_says_so(team):
    body = client_for(team[Role.AUDITOR]).get(url(team, "monitoring/")).json()
    assert body["plan"] is None and body["latest_batch"] is None
    assert body["gate"]["phase"] == "monitoring" and body["gate"]["state"] == "locked"
    assert (body["trends"], body["drift"], body["incidents"]) == ([], [], [])
    assert body["next_batch_due"] is None and body["open_incidents"] == 0


def test_the_overview_shows_trends_drift_the_alert_and_the_reopened_gate(team, deployed):
    plan = deployed
    send_batch(team, plan, 0, classifier_records(seed=10, n=400))
    send_batch(team, plan, 1, classifier_records(seed=11, n=400))
    # Week 2: the model no longer separates the 65+ band; the required criterion on every age
    # band fails on the batch's whole interval.
    send_batch(team, plan, 2, classifier_records(seed=12, n=400, weak_group="65+", weakness=1.6))

    body = client_for(team[Role.AUDITOR]).get(url(team, "monitoring/")).json()

    assert body["plan"]["baseline_run"]["number"] == plan.baseline_run.number
    assert body["plan"]["baseline_run"]["url"].endswith(f"/evaluation-runs/{plan.baseline_run.pk}/")
    assert body["batches"] == 3 and body["latest_batch"]["number"] == 3
    assert body["next_batch_due"] == period(plan, 3)
    psi = [row["psi"] for row in body["drift"] if row["psi"] is not None]
    assert psi == sorted(psi, reverse=True) and {r["kind"] for r in body["drift"]} == {
        "field",
        "group",
    }
    weak = next(t for t in body["trends"] if t["label"] == "auroc — age_band = 65+")
    assert [p["batch"] for p in weak["points"]] == [1, 2, 3]
    assert [p["period_start"] for p in weak["points"]] == [period(plan, w) for w in range(3)]
    assert any(s.startswith("threshold:") for s in weak["signals"])
    assert weak["points"][-1]["value"] < weak["baseline"]["value"]
    assert (body["open_alerts"], body["open_incidents"]) == (1, 1), body["incidents"]
    [incident] = body["incidents"]
    assert (incident["source"], incident["batch"], incident["status"]) == ("alert", 3, "open")
    assert "batch 3" in body["gate"]["reopened_reason"]


# --- The plan ----------------------------------------------------------------------------------


def test_the_plan_is_404_until_saved_then_put_creates_and_replaces_it(team, deployed):
    baseline = deployed.baseline_run
    deployed.delete()  # as before the committee set one
    chair = client_for(team[Role.COMMITTEE_CHAIR])
    missing = chair.get(url(team, "monitoring/plan/"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    plan = {
        "baseline_run": baseline.number,
        "metrics": ["auroc", "recall"],
        "cohorts": ["age_band"],
        "starts_on": "2026-01-05",
    }
    created = chair.put(url(team, "monitoring/plan/"), plan, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["metrics"] == ["auroc", "recall"] and body["period_days"] == 7
    assert body["created_by"]["username"] == team[Role.COMMITTEE_CHAIR].username

    safety = client_for(team[Role.CLINICAL_SAFETY_OFFICER])
    replaced = safety.put(
        url(team, "monitoring/plan/"), {**plan, "period_days": 14, "psi_alert": 0.2}, format="json"
    )
    assert replaced.status_code == 200, replaced.json()
    assert (replaced.json()["period_days"], replaced.json()["psi_alert"]) == (14, 0.2)
    assert chair.get(url(team, "monitoring/plan/")).json()["period_days"] == 14
    assert AuditEvent.objects.filter(action=Action.MONITORING_PLAN_SAVE).count() == 3

    refused = client_for(team.creator).put(url(team, "monitoring/plan/"), plan, format="json")
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"baseline_run": 99}, "baseline_run", "No evaluation run 99"),
        ({"metrics": ["auroc", "bogus"]}, "metrics", "bogus"),
        ({"metrics": []}, "metrics", ""),
        ({"cohorts": ["ward"]}, "cohorts", "ward"),
        ({"period_days": 0}, "period_days", ""),
        ({"cusum_h": "Infinity"}, "cusum_h", ""),
        ({"starts_on": "next monday"}, "starts_on", ""),
        ({"metrics": ["x" * 61]}, "metrics", ""),
        ({"metrics": [1, {"a": 2}]}, "metrics", "[1]: Not a valid string."),
        ({"starts_on": "9999-12-01"}, "starts_on", "three years back, one ahead"),
    ],
)
def test_a_refused_plan_names_its_field(team, deployed, change, field, words):
    plan = {
        "baseline_run": deployed.baseline_run.number,
        "metrics": ["auroc"],
        "starts_on": "2026-01-05",
        **change,
    }
    response = client_for(team[Role.COMMITTEE_CHAIR]).put(
        url(team, "monitoring/plan/"), plan, format="json"
    )
    assert response.status_code == 400, response.json()
    messages = response.json()["error"]["fields"][field]
    assert words in " ".join(str(m) for m in messages)
    assert "ErrorDetail" not in response.json()["error"]["message"]


def test_a_run_that_is_not_approved_evidence_cannot_be_the_baseline(team, deployed):
    monitoring_run = send_batch(team, deployed, 0, classifier_records(seed=3, n=100)).run
    response = client_for(team[Role.COMMITTEE_CHAIR]).put(
        url(team, "monitoring/plan/"),
        {"baseline_run": monitoring_run.number, "metrics": ["auroc"], "starts_on": "2026-01-05"},
        format="json",
    )
    assert response.status_code == 400
    assert "not the approved evidence" in response.json()["error"]["fields"]["baseline_run"][0]


# --- Batches -----------------------------------------------------------------------------------


def test_a_batch_answers_202_and_is_polled_until_analysed(team, deployed):
    client = client_for(team[Role.DATA_STEWARD])
    response = post_batch(client, team, deployed, 0)
    assert response.status_code == 202, response.json()
    batch = response.json()
    assert response["Location"] == batch["url"]
    assert (batch["number"], batch["status"], batch["period_start"]) == (
        1,
        "evaluating",
        period(deployed, 0),
    )
    assert batch["period_end"] == (deployed.starts_on + datetime.timedelta(days=6)).isoformat()
    assert batch["run"]["gate"] == "monitoring" and batch["run"]["status"] == "queued"
    assert batch["model_version"] == deployed.baseline_run.model_version.label
    run = client.get(batch["run"]["url"]).json()
    assert run["dataset_version"] == f"monitoring-{period(deployed, 0)}"

    # (On-commit enqueueing does not fire inside a test transaction: the jobs run here.)
    run_evaluation.apply(args=[batch["run"]["id"]])
    analyse_monitoring_batch.apply(args=[batch["run"]["id"]])
    done = client.get(batch["url"]).json()
    assert done["status"] == "analysed" and done["analysed_at"] and done["n_records"] == 200
    assert done["drift"]["n_current"] == 200
    assert set(done["drift"]["fields"]) >= {"score"} and set(done["drift"]["groups"]) >= {"sex"}
    assert isinstance(done["signals"], list)

    listed = client.get(url(team, "monitoring/batches/?status=analysed")).json()
    assert [b["number"] for b in listed["results"]] == [1]
    assert client.get(url(team, "monitoring/batches/?status=failed")).json()["count"] == 0
    assert client.get(url(team, "monitoring/batches/2/")).status_code == 404


def test_an_idempotency_key_sends_a_batch_once(team, deployed):
    client = client_for(team[Role.DATA_STEWARD])
    records = classifier_records(seed=7, n=150)
    first = post_batch(client, team, deployed, 0, records, HTTP_IDEMPOTENCY_KEY="week-0")
    again = post_batch(client, team, deployed, 0, records, HTTP_IDEMPOTENCY_KEY="week-0")
    assert first.status_code == again.status_code == 202, again.json()
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert again.json() == first.json() and again["Location"] == first["Location"]
    assert MonitoringBatch.objects.count() == 1
    assert EvaluationRun.objects.filter(gate__phase=Phase.MONITORING).count() == 1
    assert AuditEvent.objects.filter(action=Action.MONITORING_BATCH_SUBMIT).count() == 1

    # The same key with another period, or another file, is another batch: refused.
    other_week = post_batch(client, team, deployed, 1, records, HTTP_IDEMPOTENCY_KEY="week-0")
    other_file = post_batch(
        client,
        team,
        deployed,
        0,
        classifier_records(seed=8, n=150),
        HTTP_IDEMPOTENCY_KEY="week-0",
    )
    elsewhere = client.post(
        url(team, "feedback/"),
        {"source": "clinician", "category": "accuracy"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="week-0",
    )
    for refused in (other_week, other_file, elsewhere):
        assert refused.status_code == 422, refused.json()
        assert refused.json()["error"]["code"] == "idempotency_key_reused"
    assert MonitoringBatch.objects.count() == 1 and not Feedback.objects.exists()

    # Without the key, the period is simply taken.
    duplicate = post_batch(client, team, deployed, 0, records)
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["fields"]["period_start"] == [
        f"Batch 1 already covers the period starting {period(deployed, 0)}: one batch per period."
    ]


def test_a_refused_file_names_line_and_field_and_stores_nothing(team, deployed):
    bad = classifier_records(seed=1, n=2) + (
        b'{"id": "x", "label": 1, "score": 7.0, "prediction": 1,'
        b' "groups": {"sex": "F", "age_band": "65+"}}\n'
    )
    response = post_batch(client_for(team.creator), team, deployed, 0, bad)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["line"], error["field"]) == ("invalid_records", 3, "score")
    assert error["fields"]["file"][0].startswith('line 3, field "score"')
    assert not MonitoringBatch.objects.exists()
    assert not DatasetVersion.objects.filter(purpose="monitoring").exists()
    assert not AuditEvent.objects.filter(action=Action.MONITORING_BATCH_SUBMIT).exists()


@pytest.mark.parametrize(
    ("period_start", "words"),
    [
        (lambda plan: plan.starts_on + datetime.timedelta(days=3), "inside the period"),
        (lambda plan: plan.starts_on - datetime.timedelta(days=7), "starts before it"),
        (lambda plan: plan.starts_on + datetime.timedelta(days=7 * 20), "has not begun"),
    ],
)
def test_a_period_outside_the_plan_is_refused(team, deployed, period_start, words):
    response = client_for(team[Role.DATA_STEWARD]).post(
        url(team, "monitoring/batches/"),
        {
            "file": SimpleUploadedFile("w.jsonl", classifier_records(seed=2, n=20)),
            "period_start": period_start(deployed).isoformat(),
        },
        format="multipart",
    )
    assert response.status_code == 400
    assert words in response.json()["error"]["fields"]["period_start"][0]


def test_batch_fields_are_checked_before_the_file(team, deployed):
    client = client_for(team[Role.DATA_STEWARD])
    missing = client.post(url(team, "monitoring/batches/"), {}, format="multipart")
    assert set(missing.json()["error"]["fields"]) == {"file", "period_start"}
    unknown = client.post(
        url(team, "monitoring/batches/"),
        {
            "file": SimpleUploadedFile("w.jsonl", classifier_records(seed=2, n=20)),
            "period_start": period(deployed, 0),
            "model_version": "no-such-model",
        },
        format="multipart",
    )
    assert unknown.status_code == 400
    assert "no-such-model" in unknown.json()["error"]["fields"]["model_version"][0]


def test_who_may_send_a_batch(team, deployed):
    for role in (Role.AUDITOR, Role.COMMITTEE_CHAIR, Role.CLINICAL_SAFETY_OFFICER):
        assert post_batch(client_for(team[role]), team, deployed, 0).status_code == 403
    assert post_batch(client_for(team.outsider), team, deployed, 0).status_code == 404
    assert not MonitoringBatch.objects.exists()
    assert post_batch(client_for(team.creator), team, deployed, 0).status_code == 202


def test_a_project_that_is_not_deployed_takes_no_batch(team):
    response = client_for(team.creator).post(
        url(team, "monitoring/batches/"),
        {
            "file": SimpleUploadedFile("w.jsonl", classifier_records(seed=2, n=20)),
            "period_start": "2026-01-05",
        },
        format="multipart",
    )
    assert response.status_code == 400
    assert "no monitoring plan" in response.json()["error"]["fields"]["plan"][0]


# --- Incidents ---------------------------------------------------------------------------------


def test_an_incident_is_reported_triaged_noted_and_resolved(team):
    member = client_for(team[Role.COMMITTEE_MEMBER])
    reported = member.post(
        url(team, "incidents/"),
        {"title": "Missed sepsis flag", "description": "Bed 4, 02:00.", "severity": "moderate"},
        format="json",
    )
    assert reported.status_code == 201, reported.json()
    incident = reported.json()
    assert reported["Location"] == incident["url"]
    assert (incident["number"], incident["source"], incident["status"]) == (1, "manual", "open")
    assert incident["reported_by"]["username"] == team[Role.COMMITTEE_MEMBER].username
    assert [e["kind"] for e in incident["timeline"]] == ["opened"]

    safety_officer = team[Role.CLINICAL_SAFETY_OFFICER]
    lead = client_for(team.creator)
    triaged = lead.patch(
        incident["url"],
        {"status": "investigating", "owner": safety_officer.username, "note": "Pulling the logs."},
        format="json",
    )
    assert triaged.status_code == 200, triaged.json()
    body = triaged.json()
    assert body["status"] == "investigating"
    assert body["owner"]["username"] == safety_officer.username
    change = body["timeline"][-1]
    assert change["kind"] == "changed" and change["text"] == "Pulling the logs."
    assert change["changes"]["owner"] == [None, safety_officer.username]
    assert change["changes"]["status"] == ["open", "investigating"]
    assert change["actor"]["username"] == team.creator.username

    noted = client_for(team[Role.CLINICAL_LEAD]).post(
        incident["url"] + "notes/", {"text": "Seen twice on nights."}, format="json"
    )
    assert noted.status_code == 201
    assert (noted.json()["kind"], noted.json()["text"]) == ("note", "Seen twice on nights.")

    safety = client_for(safety_officer)
    unresolved = safety.patch(incident["url"], {"status": "resolved"}, format="json")
    assert unresolved.status_code == 400 and "resolution" in unresolved.json()["error"]["fields"]
    resolved = safety.patch(
        incident["url"],
        {"status": "resolved", "resolution": "Threshold recalibrated for nights."},
        format="json",
    )
    assert resolved.status_code == 200 and resolved.json()["resolved_at"]
    timeline = client_for(team[Role.AUDITOR]).get(incident["url"]).json()["timeline"]
    assert [e["kind"] for e in timeline] == ["opened", "changed", "note", "changed"]
    assert AuditEvent.objects.filter(action=Action.INCIDENT_UPDATE).count() == 2


def test_incident_permissions(team):
    incident = monitoring_services.incident_report(
        actor=team.creator, project=team.project, title="Wrong dose suggested"
    )
    path = url(team, f"incidents/{incident.number}/")
    auditor, member = client_for(team[Role.AUDITOR]), client_for(team[Role.COMMITTEE_MEMBER])
    assert auditor.get(path).status_code == 200
    assert auditor.post(url(team, "incidents/"), {"title": "x"}, format="json").status_code == 403
    assert auditor.post(path + "notes/", {"text": "x"}, format="json").status_code == 403
    # Reporting and notes are for every member; triage only for who manages incidents.
    assert member.patch(path, {"status": "investigating"}, format="json").status_code == 403
    assert (
        client_for(team[Role.DATA_STEWARD])
        .patch(path, {"severity": "low"}, format="json")
        .status_code
        == 403
    )
    outsider = client_for(team.outsider)
    assert outsider.get(path).status_code == 404
    assert outsider.patch(path, {"status": "resolved"}, format="json").status_code == 404
    assert client_for(team.creator).get(url(team, "incidents/2/")).status_code == 404
    assert Incident.objects.get().status == "open"


def test_an_owner_must_be_a_member_who_can_act(team):
    lead = client_for(team.creator)
    for owner, words in [
        ("nobody-by-this-name", "No user has the username"),
        (team[Role.AUDITOR].username, "not a member of this project who can act"),
        (team.outsider.username, "not a member of this project who can act"),
    ]:
        response = lead.post(url(team, "incidents/"), {"title": "x", "owner": owner}, format="json")
        assert response.status_code == 400
        assert words in response.json()["error"]["fields"]["owner"][0]
    assert not Incident.objects.exists()


def test_incidents_filter_by_status_and_severity_open_first(team):
    lead = team.creator
    low = monitoring_services.incident_report(
        actor=lead, project=team.project, title="Typo", severity="low"
    )
    monitoring_services.incident_update(
        actor=lead, incident=low, status="resolved", resolution="Fixed."
    )
    monitoring_services.incident_report(actor=lead, project=team.project, title="Slow answers")
    monitoring_services.incident_report(
        actor=lead, project=team.project, title="Wrong patient", severity="serious"
    )
    client = client_for(team[Role.AUDITOR])

    def numbers(query=""):
        response = client.get(url(team, "incidents/") + query)
        assert response.status_code == 200, response.json()
        return [i["number"] for i in response.json()["results"]]

    assert numbers() == [3, 2, 1]  # open first, newest first
    assert numbers("?status=open") == [3, 2]
    assert numbers("?status=resolved") == [1]
    assert numbers("?severity=serious") == [3]
    assert numbers("?status=open&severity=low") == []
    assert numbers("?ordering=number") == [1, 2, 3]
    wrong = client.get(url(team, "incidents/?status=closed"))
    assert wrong.status_code == 400 and "status" in wrong.json()["error"]["fields"]


def test_a_serious_incident_reopens_the_monitoring_gate(team, deployed):
    response = client_for(team[Role.CLINICAL_LEAD]).post(
        url(team, "incidents/"),
        {"title": "Sepsis missed in two patients", "severity": "serious"},
        format="json",
    )
    assert response.status_code == 201
    gate = client_for(team[Role.AUDITOR]).get(url(team, "gates/monitoring/")).json()
    assert "serious incident 1 reported" in gate["reopened_reason"]


def test_an_empty_change_is_refused(team):
    incident = monitoring_services.incident_report(
        actor=team.creator, project=team.project, title="x"
    )
    client = client_for(team.creator)
    path = url(team, f"incidents/{incident.number}/")
    empty = client.patch(path, {}, format="json")
    assert empty.status_code == 400 and "Nothing to change" in empty.json()["error"]["message"]
    misspelt = client.patch(path, {"stauts": "resolved"}, format="json")
    assert misspelt.status_code == 400 and "stauts" in misspelt.json()["error"]["fields"]


# --- Feedback ----------------------------------------------------------------------------------


def test_feedback_is_received_and_safety_feedback_opens_an_incident(team):
    client = client_for(team[Role.CLINICAL_LEAD])
    fine = client.post(
        url(team, "feedback/"),
        {"source": "clinician", "category": "usability", "rating": 4, "text": "Clear summary."},
        format="json",
    )
    assert fine.status_code == 201, fine.json()
    assert fine.json()["incident"] is None and fine.json()["rating"] == 4
    harmful = client.post(
        url(team, "feedback/"),
        {
            "source": "patient",
            "category": "safety",
            "text": "The message told me to stop my insulin.",
            "record_reference": "msg-20260305-17",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="feedback-17",
    )
    assert harmful.status_code == 201
    number = harmful.json()["incident"]
    incident = client.get(url(team, f"incidents/{number}/")).json()
    assert incident["source"] == "feedback" and "msg-20260305-17" in incident["title"]
    assert [e["kind"] for e in incident["timeline"]] == ["opened", "feedback"]

    # The integration retries: the first answer comes back, nothing is stored twice.
    retried = client.post(
        url(team, "feedback/"),
        {
            "source": "patient",
            "category": "safety",
            "text": "The message told me to stop my insulin.",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="feedback-17",
    )
    assert retried.status_code == 201 and retried["Idempotent-Replayed"] == "true"
    assert retried.json() == harmful.json()
    assert Feedback.objects.count() == 2 and Incident.objects.count() == 1

    listed = client_for(team[Role.AUDITOR]).get(url(team, "feedback/")).json()
    assert [f["category"] for f in listed["results"]] == ["safety", "usability"]
    only_safety = client.get(url(team, "feedback/?category=safety")).json()
    assert [f["incident"] for f in only_safety["results"]] == [number]
    assert (
        client_for(team[Role.AUDITOR])
        .post(url(team, "feedback/"), {"source": "clinician", "category": "other"}, format="json")
        .status_code
        == 403
    )


# --- Hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data", "field"),
    [
        ("incidents/", {"title": "Bad\x00title"}, "title"),
        ("incidents/", {"title": "t" * 201}, "title"),
        ("incidents/", {"title": "ok", "description": "d" * 5001}, "description"),
        ("incidents/", {"title": "ok", "severity": "apocalyptic"}, "severity"),
        ("incidents/", {"title": "ok", "owner": "a\x00b"}, "owner"),
        ("incidents/", {"title": ["a", "list"]}, "title"),
        ("feedback/", {"source": "clinician", "category": "other", "text": "x" * 5001}, "text"),
        ("feedback/", {"source": "clinician", "category": "other", "text": "\x00"}, "text"),
        (
            "feedback/",
            {"source": "clinician", "category": "other", "record_reference": "r" * 201},
            "record_reference",
        ),
        ("feedback/", {"source": "clinician", "category": "other", "rating": 10**30}, "rating"),
        ("feedback/", {"source": "clinician", "category": "other", "rating": 0}, "rating"),
        ("feedback/", {"source": "robot", "category": "other"}, "source"),
    ],
)
def test_hostile_input_answers_400_naming_the_field(team, path, data, field):
    response = client_for(team.creator).post(url(team, path), data, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Incident.objects.exists() and not Feedback.objects.exists()


def test_hostile_changes_and_notes_answer_400(team):
    incident = monitoring_services.incident_report(
        actor=team.creator, project=team.project, title="x"
    )
    client = client_for(team.creator)
    path = url(team, f"incidents/{incident.number}/")
    for data, field in [
        ({"note": "n\x00"}, "note"),
        ({"resolution": "r" * 5001}, "resolution"),
        ({"status": "closed"}, "status"),
    ]:
        response = client.patch(path, data, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"]
    for data in ({"text": ""}, {"text": "t" * 5001}, {"text": "\x00"}):
        response = client.post(path + "notes/", data, format="json")
        assert response.status_code == 400 and "text" in response.json()["error"]["fields"]
    assert client.get(url(team, f"incidents/{2**63}/")).status_code == 404
    assert client.get(url(team, f"monitoring/batches/{2**63}/")).status_code == 404


def test_markup_is_stored_as_text_and_answered_as_json(team):
    markup = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    response = client_for(team.creator).post(
        url(team, "incidents/"), {"title": markup, "description": markup}, format="json"
    )
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert response.json()["title"] == markup == Incident.objects.get().title


def test_hostile_batch_fields_answer_400(team, deployed):
    client = client_for(team[Role.DATA_STEWARD])
    for fields, field in [
        ({"period_start": "2026-13-40"}, "period_start"),
        ({"period_start": period(deployed, 0), "model_version": "v\x00"}, "model_version"),
        ({"period_start": period(deployed, 0), "model_version": "m" * 101}, "model_version"),
    ]:
        response = client.post(
            url(team, "monitoring/batches/"),
            {"file": SimpleUploadedFile("w.jsonl", classifier_records(seed=2, n=20)), **fields},
            format="multipart",
        )
        assert response.status_code == 400, response.content
        assert field in response.json()["error"]["fields"]
    empty = post_batch(client, team, deployed, 0, b"")
    assert empty.status_code == 400 and "file" in empty.json()["error"]["fields"]
    assert not MonitoringBatch.objects.exists()


# --- Query counts ------------------------------------------------------------------------------


def _count_queries(client, path, django_assert_max_num_queries, limit):
    with django_assert_max_num_queries(limit):
        response = client.get(path + "?page_size=500")
    assert response.status_code == 200
    return response.json()["count"]


def test_incident_and_feedback_lists_take_a_bounded_number_of_queries(
    team, django_assert_max_num_queries
):
    client = client_for(team[Role.AUDITOR])
    client.get(url(team))  # the token's first use of the minute records it
    for i in range(25):
        incident = monitoring_services.incident_report(
            actor=team.creator,
            project=team.project,
            title=f"Incident {i}",
            owner=team[Role.CLINICAL_SAFETY_OFFICER] if i % 2 else None,
        )
        monitoring_services.incident_note_add(actor=team.creator, incident=incident, text="n")
        monitoring_services.feedback_submit(
            actor=team[Role.CLINICAL_LEAD],
            project=team.project,
            source="patient",
            category="safety" if i % 5 == 0 else "usability",
            rating=3,
        )
    assert _count_queries(client, url(team, "incidents/"), django_assert_max_num_queries, 8) > 25
    assert _count_queries(client, url(team, "feedback/"), django_assert_max_num_queries, 8) == 25


def test_batch_list_and_overview_take_a_bounded_number_of_queries(
    team, deployed, django_assert_max_num_queries
):
    client = client_for(team[Role.AUDITOR])
    client.get(url(team))
    for week in range(8):
        send_batch(team, deployed, week, classifier_records(seed=week, n=120), analyse=week < 6)
    assert (
        _count_queries(client, url(team, "monitoring/batches/"), django_assert_max_num_queries, 8)
        == 8
    )
    with django_assert_max_num_queries(30):
        overview = client.get(url(team, "monitoring/"))
    assert overview.status_code == 200 and overview.json()["batches"] == 8
