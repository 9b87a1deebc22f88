"""The dossier's monitoring history: the plan, every batch with its signals, the latest drift,
the trends that signalled, and every incident with its timeline; in the embedded JSON and on
the pages, and still sealed and verifiable."""

import io
import json
import subprocess
from pathlib import Path

import pikepdf
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audits.models import Report, ReportStatus
from audits.reports import services as report_services
from audits.reports.common import canonical_json, chain_state
from audits.reports.dossier import build_dossier, dossier_content
from demo.health_system import load_demo
from demo.records import SHIFT_WEEK
from governance.models import Project, User
from governance.roles import Role
from lifecycle.gates.models import Gate
from lifecycle.monitoring import services as monitoring_services
from lifecycle.phases import Phase
from tests.monitoring import classifier_records, deploy, send_batch

pytestmark = pytest.mark.django_db

HOSTILE = "Wrong dose <script>alert(1)</script> & <b>bold</b>"


def _text(body: bytes, tmp_path: Path) -> str:
    path = tmp_path / "dossier.pdf"
    path.write_bytes(body)
    done = subprocess.run(
        ["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True
    )
    return " ".join(done.stdout.split())


def _verify(path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_report", str(path), *args, stdout=out, stderr=err)
        status = 0
    except SystemExit as exc:
        status = int(exc.code)
    return status, out.getvalue(), err.getvalue()


def test_the_demo_sepsis_dossier_holds_the_alert_its_incident_and_twelve_batches(
    tmp_path, django_capture_on_commit_callbacks, in_process_tasks
):
    load_demo()
    project = Project.objects.get(slug="sepsis-risk-summariser")
    auditor = User.objects.get(username="auditor")
    with django_capture_on_commit_callbacks(execute=True):
        report = report_services.report_request(actor=auditor, project=project, kind="dossier")
    report = Report.objects.get(pk=report.pk)
    assert report.status == ReportStatus.SUCCEEDED, report.error
    path = tmp_path / report.file_name
    with report.file.open("rb") as handle:
        path.write_bytes(handle.read())

    # Sealed and verifiable, offline and against the live trail.
    status, out, err = _verify(path)
    assert status == 0, err
    assert "Report seal verified" in out
    status, out, err = _verify(path, "--live")
    assert status == 0, err

    with pikepdf.open(path) as pdf:
        content = json.loads(pdf.attachments["dossier.json"].get_file().read_bytes())

    # The plan, with the development gate's designated run as the baseline.
    monitoring = content["monitoring"]
    plan = monitoring["plan"]
    development = next(p for p in content["phases"] if p["phase"] == Phase.DEVELOPMENT)
    assert [plan["baseline_run"]] == development["gate"]["evidence"]["runs"]
    assert plan["baseline_gate"] == Phase.DEVELOPMENT
    assert plan["cohorts"] == ["sex", "age_band"]
    assert (plan["period_days"], plan["review_interval_days"]) == (7, 90)
    assert "worst_group:auroc(age_band) >= 0.8" in [c["expression"] for c in plan["criteria"]]

    # Twelve weekly batches in period order; quiet until the shift, signalling from it.
    batches = monitoring["batches"]
    assert [b["number"] for b in batches] == list(range(1, 13))
    assert all(b["status"] == "analysed" and b["n_records"] == 400 for b in batches)
    assert [bool(b["signals"]) for b in batches] == [w >= SHIFT_WEEK for w in range(1, 13)]
    shifted = batches[SHIFT_WEEK - 1]
    required = [s for s in shifted["signals"] if s["required"]]
    assert [(s["rule"], s["metric"], s["group_value"]) for s in required] == [
        ("threshold", "auroc", "65+")
    ]
    run_numbers = {r["number"] for r in content["evaluation_runs"]}
    assert {b["run"] for b in batches} <= run_numbers

    # The alert's own incident: serious, triaged, its timeline from opening to the reopened
    # gate and the later batches joining it.
    incidents = {i["number"]: i for i in content["incidents"]}
    alert = incidents[required[0]["incident"]]
    assert (alert["source"], alert["severity"], alert["status"]) == (
        "alert",
        "serious",
        "investigating",
    )
    assert alert["batch"] == SHIFT_WEEK
    assert alert["owner"] == "Tom Lindqvist"
    kinds = [event["kind"] for event in alert["timeline"]]
    assert kinds[:3] == ["opened", "gate_reopened", "changed"]
    assert kinds.count("signal") == 12 - SHIFT_WEEK
    assert alert["timeline"][2]["changes"] == {"status": ["open", "investigating"]}

    # The monitoring gate was reopened by that cause: a new periodic review.
    gate = next(p for p in content["phases"] if p["phase"] == Phase.MONITORING)["gate"]
    assert gate["state"] == Gate.State.OPEN
    (review,) = gate["periodic_reviews"]
    assert review["cycle"] == 2
    assert f"batch {SHIFT_WEEK}" in review["cause"]
    assert "worst_group:auroc(age_band) >= 0.8" in review["cause"]

    # The latest drift, worst first, and the charts of the trends that signalled.
    drift = monitoring["latest_drift"]
    assert drift["batch"] == 12
    psi = [row["psi"] for row in drift["rows"]]
    assert psi == sorted(psi, reverse=True)
    titles = [chart["title"] for chart in monitoring["trends"]]
    assert "auroc — age_band = 65+" in titles
    assert all(chart["rows"] and len(chart["rows"]) == 12 for chart in monitoring["trends"])

    # The pages print what the JSON holds.
    text = _text(path.read_bytes(), tmp_path)
    assert "Monitoring plan" in text
    assert f"Signals of batch {SHIFT_WEEK}" in text
    assert f"Incident {alert['number']}: {alert['title']}" in text
    assert "Timeline of incident" in text
    assert "auroc — age_band = 65+" in text
    assert "Drift of batch 12 against the baseline" in text

    # The quiet project's dossier: twelve batches, no signal, no incident.
    scribe = Project.objects.get(slug="ambient-scribe")
    quiet, _ = dossier_content(scribe, chain=chain_state(scribe))
    assert len(quiet["monitoring"]["batches"]) == 12
    assert not any(b["signals"] for b in quiet["monitoring"]["batches"])
    assert quiet["monitoring"]["trends"] == [] and quiet["incidents"] == []


@pytest.fixture
def monitored(team):
    """A deployed project with a plan, two quiet weeks and a shifted one, a safety report typed
    with markup, a note on it, and clinician feedback."""
    plan = deploy(team)
    for week in range(2):
        send_batch(team, plan, week, classifier_records(seed=200 + week, n=300))
    send_batch(
        team,
        plan,
        2,
        classifier_records(seed=202, n=300, weak_group="65+", weakness=1.6),
    )
    report = monitoring_services.incident_report(
        actor=team[Role.CLINICAL_LEAD],
        project=team.project,
        title=HOSTILE,
        description="Seen on <i>ward 3</i>.",
    )
    monitoring_services.incident_note_add(
        actor=team[Role.CLINICAL_SAFETY_OFFICER], incident=report, text="Pharmacy informed."
    )
    return team, plan


def test_every_incident_and_batch_is_listed_and_user_text_prints_as_text(monitored, tmp_path):
    team, _ = monitored
    built = build_dossier(team.project, chain=chain_state(team.project))

    incidents = built.content["incidents"]
    assert [i["number"] for i in incidents] == sorted(i["number"] for i in incidents)
    manual = next(i for i in incidents if i["source"] == "manual")
    assert manual["title"] == HOSTILE
    reporter = team[Role.CLINICAL_LEAD]
    assert manual["reported_by"] == (reporter.get_full_name() or reporter.get_username())
    assert [e["kind"] for e in manual["timeline"]] == ["opened", "note"]
    assert manual["timeline"][1]["text"] == "Pharmacy informed."
    assert [b["number"] for b in built.content["monitoring"]["batches"]] == [1, 2, 3]

    text = _text(built.body, tmp_path)
    # Markup typed into an incident prints as the characters typed.
    assert HOSTILE in text
    assert "Seen on <i>ward 3</i>." in text
    with pikepdf.open(io.BytesIO(built.body)) as pdf:
        embedded = pdf.attachments["dossier.json"].get_file().read_bytes()
    assert embedded == canonical_json(built.content)


def test_the_monitoring_content_is_a_function_of_the_data(monitored):
    team, _ = monitored
    chain = chain_state(team.project)
    first, _ = dossier_content(team.project, chain=chain)
    second, _ = dossier_content(team.project, chain=chain)
    assert canonical_json(first) == canonical_json(second)


def test_another_gate_s_dossier_leaves_monitoring_to_the_monitoring_gate(monitored, tmp_path):
    team, _ = monitored
    chain = chain_state(team.project)
    development, _ = dossier_content(team.project, chain=chain, gate_phase=Phase.DEVELOPMENT)
    assert development["monitoring"] is None and development["incidents"] == []
    own, _ = dossier_content(team.project, chain=chain, gate_phase=Phase.MONITORING)
    assert [b["number"] for b in own["monitoring"]["batches"]] == [1, 2, 3]
    assert len(own["incidents"]) >= 2


def _queries(project) -> int:
    with CaptureQueriesContext(connection) as captured:
        dossier_content(project, chain=chain_state(project))
    return len(captured)


def test_the_number_of_queries_does_not_grow_with_batches_signals_or_incidents(monitored):
    team, plan = monitored
    before = _queries(team.project)
    for week in range(3, 6):
        send_batch(
            team,
            plan,
            week,
            classifier_records(seed=200 + week, n=300, weak_group="65+", weakness=1.6),
        )
    monitoring_services.feedback_submit(
        actor=team[Role.CLINICAL_LEAD],
        project=team.project,
        source="clinician",
        category="safety",
        text="Missed deterioration.",
    )
    assert _queries(team.project) == before
