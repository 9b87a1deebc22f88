"""The monitoring pages as the committee and the team use them: the empty states, the plan
form, a batch upload (accepted, and refused with what and where), the monitoring page with its
batches, trends, drift and incidents, an incident's triage and timeline, who sees which
controls, and a query count that does not grow with the batches."""

import datetime
import re

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.monitoring import services as monitoring_services
from lifecycle.monitoring.models import Incident, IncidentEvent, MonitoringBatch, MonitoringPlan
from lifecycle.monitoring.selectors import monitoring_overview
from lifecycle.phases import Phase
from tests.factories import Team, approve, make_versions, pass_gate, settle
from tests.monitoring import classifier_records, deploy, send_batch

pytestmark = pytest.mark.django_db

METRICS = ["auroc", "recall"]
WEEK = datetime.timedelta(days=7)


def records(seed: int, n: int = 200, *, weak: bool = False) -> ContentFile:
    """Monitoring records; `weak`: the model serves patients of 65 and over worse."""
    content = classifier_records(
        seed=seed, n=n, weak_group="65+" if weak else None, weakness=1.4 if weak else 0.0
    )
    return ContentFile(content, name=f"records-{seed}.jsonl")


def developed(team: Team) -> EvaluationRun:
    """Planning and data approved, and the development gate approved on one evaluated run:
    the candidate baseline of a plan, before deployment."""
    pass_gate(team, Phase.PLANNING)
    pass_gate(team, Phase.DATA)
    model, dataset = make_versions(team, rows=400)
    gate = team.project.gates.get(phase=Phase.DEVELOPMENT)
    run = evaluation_services.evaluation_run_start(
        actor=team.creator,
        gate=gate,
        model_version=model,
        dataset_version=dataset,
        upload=records(1, n=400),
        metrics=METRICS,
        resamples=50,
    )
    run_evaluation.apply(args=[run.pk])
    run.refresh_from_db()
    settle(team, Phase.DEVELOPMENT)
    gate_services.gate_submit(actor=team.creator, gate=gate, evidence_runs=[run])
    approve(team, team.project.gates.get(phase=Phase.DEVELOPMENT))
    return run


def deployed(team: Team, psi_alert: float | None = None) -> MonitoringPlan:
    """A deployed project with the weekly plan of `tests.monitoring.deploy` (first period
    twelve weeks ago); `psi_alert` changes the plan's PSI alert level, as the chair would."""
    plan = deploy(team)
    if psi_alert is None:
        return plan
    fields = ("metrics", "cohorts", "starts_on", "period_days", "review_interval_days")
    fields += ("resamples", "cusum_k", "cusum_h")
    return monitoring_services.monitoring_plan_save(
        actor=team[Role.COMMITTEE_CHAIR],
        project=team.project,
        baseline_run=plan.baseline_run,
        psi_alert=psi_alert,
        **{name: getattr(plan, name) for name in fields},
    )


def send_batches(team: Team, plan: MonitoringPlan, count: int, weak_from: int = 99) -> None:
    """`count` more weekly batches, each evaluated and analysed by the jobs (run in-process);
    from batch `weak_from` on, the model serves the oldest patients worse."""
    done = MonitoringBatch.objects.filter(project=team.project).count()
    for week in range(done, done + count):
        weak = week + 1 >= weak_from
        content = classifier_records(
            seed=100 + week, n=200, weak_group="65+" if weak else None, weakness=1.4
        )
        send_batch(team, plan, week, content)


def url(team: Team, path: str = "") -> str:
    return f"/projects/{team.project.slug}/monitoring/{path}"


def text(response) -> str:
    """The page's text without tags, spaces collapsed: what a reader sees."""
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", body)


# --- Empty states ------------------------------------------------------------------------------


def test_it_says_the_project_is_not_deployed_and_who_creates_the_plan(client, team):
    client.force_login(team[Role.COMMITTEE_MEMBER])
    page = text(client.get(url(team)))
    assert "Not deployed yet" in page
    assert "the monitoring gate is locked" in page
    assert "No monitoring plan yet" in page
    assert "The committee chair or the clinical safety officer" in page
    assert "Create the monitoring plan" not in page
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = client.get(url(team))
    assert f'href="{url(team, "plan/")}"' in response.content.decode()
    assert "Create the monitoring plan" in text(response)


def test_a_project_without_a_baseline_says_which_gate_must_be_approved_first(client, team):
    client.force_login(team[Role.CLINICAL_SAFETY_OFFICER])
    page = text(client.get(url(team, "plan/")))
    assert "No baseline run yet" in page
    assert "development or deployment gate" in page
    assert "Save the monitoring plan" not in page


# --- The plan ----------------------------------------------------------------------------------


def test_the_chair_creates_the_plan_from_the_approved_evidence(client, team):
    baseline = developed(team)
    chair = team[Role.COMMITTEE_CHAIR]
    client.force_login(chair)
    form = client.get(url(team, "plan/")).content.decode()
    assert f"Run {baseline.number} (Model development and validation)" in form
    for metric in METRICS:
        assert f'value="{metric}"' in form  # the metrics the baseline measured, as checkboxes
    assert 'value="sex"' in form and 'value="age_band"' in form
    response = client.post(
        url(team, "plan/"),
        {
            "baseline_run": baseline.pk,
            "metrics": ["auroc"],
            "cohorts": ["age_band"],
            "starts_on": "2026-09-07",
            "period_days": 14,
            "review_interval_days": 60,
            "resamples": 200,
            "cusum_k": 0.5,
            "cusum_h": 5,
            "psi_alert": 0.2,
        },
        follow=True,
    )
    page = text(response)
    assert f"Monitoring plan saved: every new batch is compared with run {baseline.number}." in (
        page
    )
    plan = MonitoringPlan.objects.get(project=team.project)
    assert (plan.metrics, plan.cohorts, plan.period_days, plan.updated_by) == (
        ["auroc"],
        ["age_band"],
        14,
        chair,
    )
    assert "14 days each, from 2026-09-07" in page
    assert "every 60 days" in page
    assert "CUSUM k 0.5, h 5.0; PSI ≥ 0.2" in page
    # Not deployed yet: the plan is ready, but no batch can be sent.
    assert "Not deployed yet" in page and "The plan below is ready" in page


def test_a_refused_plan_comes_back_with_the_error_at_its_field(client, team):
    baseline = developed(team)
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = client.post(
        url(team, "plan/"),
        {
            "baseline_run": baseline.pk,
            "metrics": ["auroc"],
            "starts_on": "2026-09-07",
            "period_days": 7,
            "review_interval_days": 90,
            "resamples": 500,
            "cusum_k": 0.5,
            "cusum_h": 4,
            "psi_alert": 0,
        },
    )
    assert response.status_code == 400
    page = text(response)
    assert "The plan was not saved." in page
    assert "PSI alert level: Ensure this value is greater than or equal to 0.01." in page
    assert not MonitoringPlan.objects.filter(project=team.project).exists()


@pytest.mark.parametrize("role", [Role.PROJECT_LEAD, Role.COMMITTEE_MEMBER, Role.AUDITOR])
def test_only_the_roles_that_set_gate_policy_may_open_the_plan_form(client, team, role):
    client.force_login(team[role])
    assert client.get(url(team, "plan/")).status_code == 403
    assert "Edit the monitoring plan" not in text(client.get(url(team)))


def test_outsiders_get_404_on_every_monitoring_page(client, team):
    client.force_login(team.outsider)
    for path in ("", "plan/"):
        assert client.get(url(team, path)).status_code == 404
    assert client.get(f"/projects/{team.project.slug}/incidents/1/").status_code == 404
    assert client.post(url(team, "batches/")).status_code == 404


# --- Batches -----------------------------------------------------------------------------------


def test_the_lead_uploads_a_batch_and_sees_it_listed(client, team):
    plan = deployed(team)
    client.force_login(team.creator)
    page = client.get(url(team)).content.decode()
    assert 'id="upload-form"' in page
    assert f'value="{plan.starts_on:%Y-%m-%d}"' in page  # the next period is proposed
    response = client.post(
        url(team, "batches/"),
        {"file": records(7), "period_start": plan.starts_on.isoformat()},
        follow=True,
    )
    batch = MonitoringBatch.objects.get(project=team.project)
    assert response.redirect_chain == [(url(team), 302)]
    page = text(response)
    end = plan.starts_on + datetime.timedelta(days=6)
    assert f"Batch 1 ({plan.starts_on:%Y-%m-%d} to {end:%Y-%m-%d}) uploaded" in page
    assert "Evaluating" in page and f"Run {batch.run.number}" in page
    assert f"the period starting {plan.starts_on + WEEK:%Y-%m-%d}" in page


def test_a_refused_batch_says_what_was_refused_and_where(client, team):
    plan = deployed(team)
    client.force_login(team.creator)
    inside = plan.starts_on + datetime.timedelta(days=3)
    response = client.post(
        url(team, "batches/"), {"file": records(7), "period_start": inside.isoformat()}
    )
    assert response.status_code == 400
    page = text(response)
    assert "The batch was refused; nothing was stored." in page
    assert (
        f"Period starts on: Periods are 7 day(s) long from {plan.starts_on:%Y-%m-%d}: "
        f"{inside:%Y-%m-%d} is inside the period that starts on {plan.starts_on:%Y-%m-%d}."
    ) in page
    assert f'data-canonical-url="{url(team)}"' in response.content.decode()

    broken = ContentFile(
        b'{"id": "a", "label": 1, "score": 0.4}\n{"id": "b", "label": 1', "b.jsonl"
    )
    response = client.post(
        url(team, "batches/"), {"file": broken, "period_start": plan.starts_on.isoformat()}
    )
    assert response.status_code == 400
    assert re.search(r"Records file \(\.jsonl or \.csv\): [^<]*[Ll]ine 2", text(response))
    assert not MonitoringBatch.objects.filter(project=team.project).exists()


def test_a_batch_before_deployment_is_refused_with_the_reason(client, team):
    baseline = developed(team)
    monitoring_services.monitoring_plan_save(
        actor=team[Role.COMMITTEE_CHAIR],
        project=team.project,
        baseline_run=baseline,
        metrics=METRICS,
        cohorts=[],
        starts_on=timezone.localdate() - WEEK,
    )
    client.force_login(team.creator)
    assert 'id="upload-form"' not in client.get(url(team)).content.decode()
    response = client.post(
        url(team, "batches/"),
        {"file": records(7), "period_start": (timezone.localdate() - WEEK).isoformat()},
    )
    assert response.status_code == 400
    assert "gate: The project is not deployed yet" in text(response)


def test_the_batch_form_answers_a_get_with_the_monitoring_page(client, team):
    client.force_login(team.creator)
    response = client.get(url(team, "batches/"))
    assert (response.status_code, response["Location"]) == (303, url(team))


@pytest.mark.parametrize("role", [Role.COMMITTEE_CHAIR, Role.CLINICAL_LEAD, Role.AUDITOR])
def test_members_who_may_not_send_batches_see_no_upload_form(client, team, role):
    plan = deployed(team)
    client.force_login(team[role])
    assert 'id="upload-form"' not in client.get(url(team)).content.decode()
    response = client.post(
        url(team, "batches/"), {"file": records(7), "period_start": plan.starts_on.isoformat()}
    )
    assert response.status_code == 400
    page = text(response)
    assert "The batch was refused; nothing was stored. You are not allowed to upload" in page
    assert 'id="upload-form"' not in response.content.decode()
    assert not MonitoringBatch.objects.exists()


# --- The monitoring page with analysed batches -------------------------------------------------


@pytest.fixture
def monitored(team):
    """Three analysed weekly batches, the model serving the oldest patients worse in the third;
    a PSI of 0.05 is an alert."""
    plan = deployed(team, psi_alert=0.05)
    send_batches(team, plan, 3, weak_from=3)
    return team


def test_the_page_shows_batches_trends_and_the_drift_of_the_latest_batch(client, monitored):
    team = monitored
    client.force_login(team[Role.COMMITTEE_MEMBER])
    response = client.get(url(team))
    html, page = response.content.decode(), text(response)
    batches = list(MonitoringBatch.objects.filter(project=team.project).order_by("-number"))
    assert [b.status for b in batches] == ["analysed"] * 3
    # Newest first, each with its period, status, run and signals.
    positions = [page.index(f"Batch {b.number} {b.period_start:%Y-%m-%d}") for b in batches]
    assert positions == sorted(positions)
    for batch in batches:
        assert f'href="/projects/{team.project.slug}/runs/{batch.run_id}/"' in html
    # One chart per watched metric and cohort, each with its data table.
    trends = monitoring_overview(team.project).trends
    assert len(trends) > 6  # 4 metrics: overall, fairness by attribute, and per subgroup
    assert html.count('<figure class="chart"') == len(trends)
    assert html.count("<summary>Data table</summary>") == len(trends)
    assert "auroc — age_band = 65+" in page and "auroc — sex = F" in page
    # The drift table of batch 3, worst PSI first, an alert in words where PSI >= 0.05.
    latest = batches[0]
    assert f"Batch {latest.number} ({latest.period_start:%Y-%m-%d}" in page
    drift = html[
        html.index('<table class="drift">') : html.index(
            "</table>", html.index('<table class="drift">')
        )
    ]
    names = re.findall(r'<th scope="row">(\w+) ', drift)
    psi = {
        **{name: s["psi"]["value"] for name, s in latest.drift["fields"].items()},
        **{name: s["psi"]["value"] for name, s in latest.drift["groups"].items()},
    }
    assert names == sorted(psi, key=lambda n: -psi[n])
    rows = dict(zip(names, drift.split('<th scope="row">')[1:], strict=True))
    for name in names:
        assert ("⚠ alert" in rows[name]) == (psi[name] >= 0.05), name
    assert any(value >= 0.05 for value in psi.values())
    for heading in ("PSI", "KS statistic", "KS p-value", "Wasserstein", "Chi-square p"):
        assert f">{heading}</th>" in drift


def test_charts_with_signals_come_first(client, monitored):
    team = monitored
    trends = monitoring_overview(team.project).trends
    signalling = [t.label for t in trends if t.latest_signals]
    client.force_login(team[Role.COMMITTEE_MEMBER])
    html = client.get(url(team)).content.decode()
    titles = re.findall(r"<figcaption>(.*?)</figcaption>", html)
    assert signalling and trends[0].label == "auroc" and not trends[0].latest_signals
    assert len(titles) == len(trends)
    assert titles[: len(signalling)] == signalling
    assert titles[len(signalling)] == "auroc"  # then the rest, in the trends' own order
    assert "Monitoring reopened the monitoring gate for review:" in text(client.get(url(team)))


def test_the_page_does_not_grow_with_the_batches(client, team, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    plan = deployed(team)
    send_batches(team, plan, 3)
    monitoring_services.incident_report(
        actor=team.creator, project=team.project, title="Wrong patient summarised"
    )
    client.force_login(team[Role.PROJECT_LEAD])
    client.get(url(team))
    with CaptureQueriesContext(connection) as three:
        assert client.get(url(team)).status_code == 200
    send_batches(team, plan, 9)
    monitoring_services.incident_report(
        actor=team.creator, project=team.project, title="Summary missed an allergy"
    )
    with django_assert_max_num_queries(len(three)):
        response = client.get(url(team))
    assert "12 batches, newest first" in text(response)


# --- Incidents ---------------------------------------------------------------------------------


def test_a_member_reports_a_safety_incident_and_its_text_is_escaped(client, team):
    client.force_login(team[Role.CLINICAL_LEAD])
    response = client.post(
        f"/projects/{team.project.slug}/incidents/new/",
        {
            "title": "<script>alert(1)</script> summary named the wrong drug",
            "description": "Seen on ward 4.\n<b>bold</b>",
            "severity": "moderate",
            "owner": team[Role.CLINICAL_SAFETY_OFFICER].pk,
        },
        follow=True,
    )
    incident = Incident.objects.get(project=team.project)
    assert response.redirect_chain == [
        (f"/projects/{team.project.slug}/incidents/{incident.number}/", 302)
    ]
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; summary named the wrong drug" in html
    assert "Seen on ward 4.<br>&lt;b&gt;bold&lt;/b&gt;" in html
    assert (incident.source, incident.severity, incident.owner) == (
        "manual",
        "moderate",
        team[Role.CLINICAL_SAFETY_OFFICER],
    )
    listed = text(client.get(url(team)))
    assert f"Incident {incident.number}: <script>alert(1)</script>" not in listed
    assert "1 open; open incidents first" in listed


def test_a_refused_report_shows_the_monitoring_page_with_the_error(client, team):
    client.force_login(team[Role.CLINICAL_LEAD])
    response = client.post(
        f"/projects/{team.project.slug}/incidents/new/", {"title": "   ", "severity": "low"}
    )
    assert response.status_code == 400
    assert "The incident was not reported." in text(response)
    assert "What happened, in one line: This field is required." in text(response)
    assert not Incident.objects.exists()


def test_the_auditor_may_read_incidents_but_not_report_or_change_them(client, team):
    incident = monitoring_services.incident_report(
        actor=team.creator, project=team.project, title="Draft missed a dose change"
    )
    auditor = team[Role.AUDITOR]
    client.force_login(auditor)
    assert 'id="report-form"' not in client.get(url(team)).content.decode()
    incident_url = f"/projects/{team.project.slug}/incidents/{incident.number}/"
    page = client.get(incident_url).content.decode()
    assert "Draft missed a dose change" in page
    assert 'id="update-form"' not in page and 'id="note-form"' not in page
    response = client.post(incident_url, {"action": "note", "text": "Looks fine."})
    assert response.status_code == 400
    assert "Not saved." in text(response)
    assert not IncidentEvent.objects.filter(incident=incident, kind="note").exists()


def test_the_chair_triages_an_incident_and_the_timeline_shows_each_change(client, team):
    incident = monitoring_services.incident_report(
        actor=team[Role.CLINICAL_LEAD], project=team.project, title="Summary omitted a dose"
    )
    chair = team[Role.COMMITTEE_CHAIR]
    owner = team[Role.CLINICAL_SAFETY_OFFICER]
    client.force_login(chair)
    incident_url = f"/projects/{team.project.slug}/incidents/{incident.number}/"
    page = client.get(incident_url).content.decode()
    assert 'id="update-form"' in page and 'id="note-form"' in page
    response = client.post(
        incident_url,
        {
            "action": "update",
            "status": "investigating",
            "severity": "moderate",
            "owner": owner.pk,
            "resolution": "",
            "note": "Pulling the three affected summaries.",
        },
        follow=True,
    )
    page = text(response)
    assert f"Incident {incident.number} updated." in page
    timeline = page[page.index("Timeline") :]
    assert "Changed" in timeline
    assert f"{chair.get_full_name()}" in timeline
    assert "status open investigating" in timeline
    assert f"owner — {owner.username}" in timeline
    assert "Pulling the three affected summaries." in timeline

    # Resolving needs a resolution: the error is at its field, nothing changes.
    response = client.post(
        incident_url,
        {"action": "update", "status": "resolved", "severity": "moderate", "owner": owner.pk},
    )
    assert response.status_code == 400
    assert "Resolution: Say how the incident was resolved before resolving it." in text(response)
    incident.refresh_from_db()
    assert incident.status == "investigating"

    response = client.post(
        incident_url, {"action": "note", "text": "Vendor informed."}, follow=True
    )
    assert "Note added to the timeline." in text(response)
    assert text(response).index("Vendor informed.") > text(response).index("Pulling the three")


def test_an_unknown_incident_is_404(client, team):
    client.force_login(team.creator)
    assert client.get(f"/projects/{team.project.slug}/incidents/7/").status_code == 404
