"""The project lead fills in the model facts in a real browser: the missing list links to
the field, a saved fact leaves both missing lists, and an auditor reads the same page without
inputs. axe-core checks both views."""

import pytest

from governance.roles import Role
from lifecycle.projects.models import ModelFacts
from lifecycle.projects.services import model_facts_update
from tests.browser.test_committee import accessible, login
from tests.factories import make_team

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_lead_fills_in_a_missing_fact_and_an_auditor_reads_it(page):
    team = make_team()
    model_facts_update(
        actor=team.creator,
        project=team.project,
        changes={"known_risks": "Misses atypical presentations.\nNot for children."},
    )
    login(page, team.creator)
    page.goto(f"/projects/{team.project.slug}/facts/")
    accessible(page, "model-facts")

    chai = page.get_by_role("region", name="For the CHAI Applied Model Card")
    hti1 = page.get_by_role("region", name="For the HTI-1 source attributes")
    assert chai.get_by_role("link", name="Developer contact").count() == 1
    hti1.get_by_role("link", name="Developer contact").click()
    assert page.url.endswith("#fact-developer_contact")
    field = page.get_by_label("Developer contact")
    field.fill("clinical-ai@hospital.example")
    page.get_by_label("Reason for the change").fill("Contact agreed with the vendor.")
    page.get_by_role("button", name="Save model facts").click()

    assert (
        "Model facts saved (1 changed: Developer contact)."
        in page.get_by_role("status").inner_text()
    )
    assert page.get_by_label("Developer contact").input_value() == "clinical-ai@hospital.example"
    chai = page.get_by_role("region", name="For the CHAI Applied Model Card")
    assert chai.get_by_role("link", name="Developer contact").count() == 0
    assert ModelFacts.objects.get(project=team.project).facts["developer_contact"] == (
        "clinical-ai@hospital.example"
    )

    page.context.clear_cookies()
    login(page, team[Role.AUDITOR])
    page.goto(f"/projects/{team.project.slug}/facts/")
    accessible(page, "model-facts-read-only")
    assert page.get_by_role("textbox").count() == 0
    risks = page.locator("#fact-known_risks .fact-value")
    assert risks.inner_text() == "Misses atypical presentations.\nNot for children."
