"""An auditor takes a report away in a real browser: generates the decision dossier on the
Reports page, sees it ready and sealed, opens its page (the seal checked again), downloads it,
and the download verifies offline; the HTI-1 page and the public key page read well. axe-core
checks every page."""

import io

import pytest
from django.core.management import call_command

from governance.roles import Role
from lifecycle.phases import Phase
from tests.browser.test_committee import accessible, login
from tests.factories import make_team, pass_gate

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_auditor_generates_downloads_and_verifies_a_dossier(page, tmp_path):
    team = make_team()
    pass_gate(team, Phase.PLANNING)
    login(page, team[Role.AUDITOR])
    page.goto(f"/projects/{team.project.slug}/")
    page.get_by_role("navigation", name="Project sections").get_by_role(
        "link", name="Reports"
    ).click()
    accessible(page, "reports-empty")

    page.get_by_label("Decision dossier").check()
    page.get_by_role("button", name="Generate").click()
    # The embedded default generates in-process; the row then says it is ready and sealed.
    row = page.locator("#report-list tbody tr").first
    row.get_by_text("✓ Ready, sealed").wait_for()
    assert "SHA-256" in row.inner_text()
    accessible(page, "reports")

    row.get_by_role("link", name="Decision dossier").click()
    page.get_by_text("✓ verified now").wait_for()
    assert "Audit chain" in page.locator("pre.seal-lines").inner_text()
    accessible(page, "report")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").first.click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.read_bytes().startswith(b"%PDF-")
    out = io.StringIO()
    call_command("verify_report", str(path), stdout=out)
    assert "Report seal verified" in out.getvalue()

    page.goto(f"/projects/{team.project.slug}/reports/hti1/")
    assert page.locator("table").count() >= 1
    accessible(page, "report-hti1")
    page.goto("/reports/key/")
    assert "Ed25519" in page.inner_text("main")
    accessible(page, "report-key")


def test_the_gate_panel_exports_that_gate_s_record(page):
    team = make_team()
    pass_gate(team, Phase.PLANNING)
    login(page, team[Role.COMMITTEE_CHAIR])
    page.goto(f"/projects/{team.project.slug}/phases/{Phase.PLANNING}/")
    page.get_by_role("button", name="Export this gate's decision record (PDF/A)").click()
    page.wait_for_url(f"**/projects/{team.project.slug}/reports/")
    row = page.locator("#report-list tbody tr").first
    row.get_by_text("✓ Ready, sealed").wait_for()
    assert "planning gate" in row.inner_text()
