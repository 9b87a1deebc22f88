"""The committee and the dev team in a real browser: sign a gate, refuse a wrong password,
upload an evaluation and read its charts, and an outsider's 404. axe-core checks every main
page for serious or critical accessibility violations."""

import json

import pytest
from django.core.files.base import ContentFile

from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.gates import services as gate_services
from lifecycle.gates.readiness import readiness_of
from tests.browser.conftest import AXE, SCREENSHOTS
from tests.factories import PASSWORD, make_team, make_versions, settle, sign

pytestmark = pytest.mark.django_db(transaction=True)


def login(page, user):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


def accessible(page, name: str) -> None:
    """No serious or critical axe-core violation, and a screenshot for the record."""
    page.evaluate(AXE.read_text())
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert bad == [], json.dumps(bad, indent=1)


@pytest.fixture
def gate_for_chair():
    """A planning gate in review that every required role but the chair has approved, with a
    file of evidence to open."""
    team = make_team()
    item = team.project.checklist_items.get(key="planning.data-privacy-plan")
    checklist_services.evidence_add_file(
        actor=team.creator, item=item, upload=ContentFile(b"DPIA v3 signed", name="dpia.txt")
    )
    settle(team, "planning")
    gate = gate_services.gate_submit(
        actor=team.creator, gate=team.project.gates.get(phase="planning")
    )
    for role in readiness_of(gate).required_roles:
        if role != Role.COMMITTEE_CHAIR:
            sign(team, gate, role)
    return team


def test_the_chair_finds_the_pending_gate_opens_evidence_and_signs(page, gate_for_chair):
    team = gate_for_chair
    login(page, team[Role.COMMITTEE_CHAIR])
    accessible(page, "dashboard")
    page.get_by_role("link", name=f"{team.project.name} — Project definition and planning").click()
    page.wait_for_url("**/phases/planning/**")
    accessible(page, "phase-in-review")
    with page.expect_download() as download:
        page.get_by_role("link", name="dpia.txt").click()
    assert download.value.suggested_filename == "dpia.txt"
    page.get_by_role("button", name="Sign this gate…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Approved").check()
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign").click()
    page.wait_for_url("**/phases/planning/**")
    assert "Signed: " in page.locator(".messages").inner_text()
    heading = page.get_by_role("heading", level=2).first.inner_text()
    assert "Approved" in heading
    assert page.get_by_role("link", name="2. Data").is_visible()
    accessible(page, "phase-approved")


def test_a_wrong_password_refuses_the_signature(page, gate_for_chair):
    team = gate_for_chair
    login(page, team[Role.COMMITTEE_CHAIR])
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    page.get_by_role("button", name="Sign this gate…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Approved").check()
    dialog.get_by_label("Your password").fill("not my password")
    dialog.get_by_role("button", name="Sign").click()
    dialog = page.get_by_role("dialog")
    assert dialog.is_visible()  # reopened, the error next to the password field
    assert "nothing was signed" in dialog.locator(".errorlist").inner_text()
    accessible(page, "sign-refused")
    assert (
        team.project.gates.get(phase="planning")
        .signatures.filter(signer=team[Role.COMMITTEE_CHAIR])
        .count()
        == 0
    )


def test_the_lead_uploads_an_evaluation_and_sees_the_charts(page, tmp_path):
    team = make_team()
    make_versions(team, dataset="valid-2026", purpose="validation", rows=600)
    gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=team.project.gates.get(phase="planning"),
        metric="auroc",
        comparator=">=",
        threshold=0.8,
    )
    records = tmp_path / "records.jsonl"
    records.write_bytes(binary_classifier(seed=3, n=600, prevalence=0.3, separation=1.5))
    login(page, team.creator)
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    form = page.locator("form", has=page.get_by_role("button", name="Upload and evaluate"))
    form.get_by_label("Records file").set_input_files(str(records))
    form.get_by_label("Model version").select_option(label="v1")
    form.get_by_label("Dataset version").select_option(label="valid-2026 (Validation)")
    form.get_by_label("Metrics").fill(
        "auroc,recall,ece,confusion_matrix,demographic_parity_difference"
    )
    form.get_by_label("Resamples").fill("200")
    form.get_by_role("button", name="Upload and evaluate").click()
    page.wait_for_url("**/runs/**")
    page.get_by_role("heading", name="Charts").wait_for()
    for chart in ("ROC curve", "Calibration", "Confusion matrix"):
        assert (
            page.get_by_role("img", name=chart).count() == 1
            or page.locator(f"figure:has-text('{chart}') svg").count() == 1
        )
    assert "✓ pass" in page.locator("table").first.inner_text()
    accessible(page, "run")
    page.goto(f"/projects/{team.project.slug}/")
    accessible(page, "project-overview")
    page.goto(f"/projects/{team.project.slug}/audit/")
    accessible(page, "audit-timeline")
    page.goto("/account/")
    accessible(page, "account")


def test_an_outsider_gets_404_on_a_project(page):
    team = make_team()
    login(page, team.outsider)
    response = page.goto(f"/projects/{team.project.slug}/")
    assert response.status == 404
    response = page.goto(f"/projects/{team.project.slug}/phases/planning/")
    assert response.status == 404


def test_the_login_page_is_accessible(page):
    page.goto("/accounts/login/")
    accessible(page, "login")


def test_on_a_tablet_the_lead_edits_an_item_inline_with_the_keyboard(page):
    team = make_team()
    page.set_viewport_size({"width": 768, "height": 1024})
    login(page, team.creator)
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    # Nothing wider than the screen: no sideways scrolling at tablet width.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    card = page.locator("#item-planning\\.data-privacy-plan")
    card.get_by_label("Status").select_option("not_applicable")
    card.get_by_role("button", name="Save status").focus()
    page.keyboard.press("Enter")
    # htmx swaps the card in place: the refusal sits under the justification field.
    card = page.locator("#item-planning\\.data-privacy-plan")
    assert "justification" in card.locator(".errorlist").inner_text().lower()
    card.get_by_label("Justification").fill("The scribe never sees identifiable data.")
    card.get_by_role("button", name="Save status").click()
    card = page.locator("#item-planning\\.data-privacy-plan")
    card.get_by_text("Not applicable because:").wait_for()
    assert page.url.endswith("/phases/planning/")  # no full page load
    page.screenshot(path=str(SCREENSHOTS / "phase-tablet.png"), full_page=True)
    item = team.project.checklist_items.get(key="planning.data-privacy-plan")
    assert item.status == "not_applicable"


def test_the_sign_dialog_is_keyboard_operable(page, gate_for_chair):
    team = gate_for_chair
    login(page, team[Role.COMMITTEE_CHAIR])
    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    opener = page.get_by_role("button", name="Sign this gate…")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    assert dialog.is_visible()
    # Focus moves into the dialog, and Escape closes it, returning focus to the opener.
    assert page.evaluate("document.activeElement.closest('dialog') !== null")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    assert page.evaluate("document.activeElement.textContent.trim()") == "Sign this gate…"
