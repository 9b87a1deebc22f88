"""The committee chair follows a deployed project's monitoring in a real browser: the trend
charts with their data tables and the drift table of the latest batch, then an incident the
alert rules raised, triaged with a note that shows on its timeline. axe-core checks both
pages."""

import pytest

from governance.roles import Role
from lifecycle.monitoring.models import Incident
from tests.browser.test_committee import accessible, login
from tests.factories import make_team
from tests.monitoring import classifier_records, deploy, send_batch

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_chair_reads_the_trends_and_drift_and_triages_an_incident(page):
    team = make_team(name="Sepsis risk summariser")
    plan = deploy(team)
    for week in range(3):
        # The third week's records: the model serves patients of 65 and over far worse.
        weak = "65+" if week == 2 else None
        records = classifier_records(seed=70 + week, n=200, weak_group=weak, weakness=1.4)
        send_batch(team, plan, week, records)
    incident = Incident.objects.filter(project=team.project).order_by("number").first()
    assert incident is not None and incident.status == "open"

    login(page, team[Role.COMMITTEE_CHAIR])
    page.goto(f"/projects/{team.project.slug}/")
    page.get_by_role("navigation", name="Project sections").get_by_role(
        "link", name="Monitoring", exact=True
    ).click()
    page.wait_for_url("**/monitoring/")
    accessible(page, "monitoring")

    # A trend chart: its title, its picture and, opened, its data table of the three batches.
    chart = page.locator("figure.chart").first
    assert chart.locator("svg[role=img]").count() == 1
    chart.get_by_text("Data table").click()
    table = chart.get_by_role("table")
    assert table.is_visible()
    assert table.locator("tbody tr").count() == 3
    assert "Batch" in table.locator("thead").inner_text()

    # The drift table of the latest analysed batch.
    drift = page.get_by_role("table").filter(has_text="worst first")
    assert "Batch 3" in drift.locator("caption").inner_text()
    for heading in ("PSI", "KS statistic", "Wasserstein", "Chi-square p"):
        assert drift.get_by_role("columnheader", name=heading, exact=True).count() == 1

    # Open the incident, move it to investigating with a note.
    page.get_by_role("link", name=f"Incident {incident.number}: ").first.click()
    page.wait_for_url(f"**/incidents/{incident.number}/")
    page.get_by_label("Status").select_option("investigating")
    page.get_by_label("Note for the timeline").fill("Checking the 65+ cohort's records.")
    page.get_by_role("button", name="Save the change").click()
    page.wait_for_url(f"**/incidents/{incident.number}/")
    assert f"Incident {incident.number} updated." in page.get_by_role("status").inner_text()
    entry = page.locator(".incident-timeline > li").last
    assert "Changed" in entry.inner_text()
    assert "Investigating" in page.locator("dl.facts").inner_text()
    row = entry.get_by_role("row").filter(has_text="status")
    assert "open" in row.inner_text() and "investigating" in row.inner_text()
    assert "Checking the 65+ cohort's records." in entry.inner_text()
    accessible(page, "incident")
    incident.refresh_from_db()
    assert incident.status == "investigating"
