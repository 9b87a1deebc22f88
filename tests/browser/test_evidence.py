"""Evidence and the committee's controls in a real browser: the lead designates the evidence
when submitting, a refused upload shows its reason at the top with focus, and a chair who
marked a gate reviewed can still approve it."""

import pytest
from django.core.files.base import ContentFile

from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.gates.readiness import readiness_of
from tests.browser.test_committee import accessible, login
from tests.factories import PASSWORD, make_team, make_versions, settle, sign

pytestmark = pytest.mark.django_db(transaction=True)


def scored_run(team, seed: int, separation: float = 1.5):
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase="planning"),
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=ContentFile(
            binary_classifier(seed=seed, n=400, prevalence=0.3, separation=separation),
            name=f"run-{seed}.jsonl",
        ),
        metrics=["auroc", "recall"],
        resamples=100,
    )
    run_evaluation.apply(args=[run.pk])
    run.refresh_from_db()
    return run


def test_the_lead_designates_the_evidence_when_submitting(page):
    team = make_team()
    make_versions(team)
    gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=team.project.gates.get(phase="planning"),
        metric="auroc",
        comparator=">=",
        threshold=0.8,
    )
    strong = scored_run(team, seed=1)
    weak = scored_run(team, seed=2, separation=0.0)
    settle(team, "planning")
    login(page, team.creator)
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    form = page.locator("#submit-form")
    # The latest run is proposed; the lead chooses the strong one instead.
    assert form.get_by_label(f"Run {weak.number}:", exact=False).is_checked()
    form.get_by_label(f"Run {weak.number}:", exact=False).uncheck()
    form.get_by_label(f"Run {strong.number}:", exact=False).check()
    form.get_by_role("button", name="Submit the Project definition and planning gate").click()
    page.wait_for_url("**/phases/planning/**")
    evidence = page.locator("#gate-evidence").inner_text()
    assert "Judged on the evidence the project lead designated" in evidence
    assert f"Run {strong.number}" in evidence and f"Run {weak.number}" not in evidence
    assert "✓ pass" in page.locator(".conditions").inner_text()
    assert "Next: waiting for:" in page.locator(".gate-panel").inner_text()
    accessible(page, "phase-evidence-designated")
    gate = team.project.gates.get(phase="planning")
    assert list(gate.evidence_runs.all()) == [strong]


def test_a_refused_upload_says_why_at_the_top_and_takes_the_focus(page, tmp_path):
    team = make_team()
    make_versions(team, dataset="valid-2026", purpose="validation", rows=6000)
    records = tmp_path / "records.jsonl"
    records.write_bytes(binary_classifier(seed=3, n=400, prevalence=0.3, separation=1.5))
    login(page, team.creator)
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    form = page.locator("#upload-form")
    form.get_by_label("Records file").set_input_files(str(records))
    form.get_by_label("Model version").select_option(label="v1")
    form.get_by_label("Dataset version").select_option(label="valid-2026 (Validation)")
    form.get_by_label("Metrics").fill("auroc")
    form.get_by_role("button", name="Upload and evaluate").click()
    banner = page.locator("#upload-refused")
    banner.wait_for()
    text = banner.inner_text()
    assert "nothing was stored" in text
    assert "400 records" in text and "6,000 rows" in text
    assert page.evaluate("document.activeElement.id") == "upload-refused"
    # The address bar shows the page, not the form's endpoint (which would answer 405).
    assert page.url.split("#")[0].endswith(f"/projects/{team.project.slug}/phases/planning/")
    accessible(page, "upload-refused")
    assert not team.project.evaluation_runs.exists()


def test_a_chair_who_marked_the_gate_reviewed_can_still_approve(page):
    team = make_team()
    item = team.project.checklist_items.get(key="planning.data-privacy-plan")
    checklist_services.evidence_add_note(actor=team.creator, item=item, note="DPIA v3.")
    settle(team, "planning")
    gate = gate_services.gate_submit(
        actor=team.creator, gate=team.project.gates.get(phase="planning")
    )
    for role in readiness_of(gate).required_roles:
        if role != Role.COMMITTEE_CHAIR:
            sign(team, gate, role)
    chair = team[Role.COMMITTEE_CHAIR]
    login(page, chair)
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    page.get_by_role("button", name="Sign this gate…").click()
    dialog = page.get_by_role("dialog")
    assert "never counts as an approval" in dialog.inner_text()
    dialog.get_by_label("Reviewed").check()
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign").click()
    page.wait_for_url("**/phases/planning/**")
    # Still waiting for the chair: on the dashboard and on the gate.
    page.goto("/")
    pending = page.locator("#pending-title + ul").inner_text()
    assert team.project.name in pending
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    assert "committee chair's approval" in page.locator(".gate-panel").inner_text()
    page.get_by_role("button", name="Sign this gate…").click()
    dialog = page.get_by_role("dialog")
    assert "your approval or rejection is still open" in dialog.inner_text()
    assert dialog.get_by_label("Reviewed").count() == 0
    dialog.get_by_label("Approved").check()
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign").click()
    page.wait_for_url("**/phases/planning/**")
    assert "Approved" in page.get_by_role("heading", level=2).first.inner_text()
    meanings = set(gate.signatures.filter(signer=chair).values_list("meaning", flat=True))
    assert meanings == {"review", "approve"}
