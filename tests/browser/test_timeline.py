"""The audit timeline in a real browser: no sideways scrolling at 1280 and 390 px, a change
shown as a field-by-field diff, long text cut at a word and opened with a click; the login
page's two fields equally wide; a page answered at a form's URL puts its own address back."""

import pytest

from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.evaluations import services as evaluation_services
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_committee import accessible, login
from tests.factories import make_team

pytestmark = pytest.mark.django_db(transaction=True)

OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture
def busy_trail():
    """A project whose trail holds a status change, a long comment with markup, and values
    with no place to break (a hash, a long label)."""
    team = make_team()
    item = team.project.checklist_items.first()
    checklist_services.checklist_item_update(actor=team.creator, item=item, status="in_progress")
    checklist_services.comment_add(
        actor=team[Role.COMMITTEE_MEMBER],
        item=item,
        body="<b>Please</b> attach the subgroup analysis for patients whose preferred language "
        "is not English; the pilot population differs from the validation cohort in "
        "several ways that matter for documentation quality and for the safety review.",
    )
    evaluation_services.model_version_create(
        actor=team.creator,
        project=team.project,
        label="scribe-" + "x" * 60,
        base_model="https://models.example.org/" + "a" * 120,
        adaptation="rag",
    )
    return team


def test_the_timeline_fits_the_screen_and_shows_changes_as_diffs(page, busy_trail):
    team = busy_trail
    login(page, team[Role.AUDITOR])
    page.goto(f"/projects/{team.project.slug}/audit/")
    assert page.evaluate(OVERFLOW) <= 0, "the timeline scrolls sideways at 1280 px"
    row = page.locator("table.diff tbody tr", has=page.locator("th", has_text="status"))
    assert row.locator("del").inner_text() == "not_started"
    assert row.locator("ins").inner_text() == "in_progress"
    assert page.locator("text={'status'").count() == 0  # no Python dictionaries
    # The comment is cut at a word; its markup is text; a click shows all of it.
    comment = page.locator("details.long-text", has_text="Please").first
    assert "<b>Please</b>" in comment.inner_text()
    assert "safety review." not in comment.inner_text()
    comment.locator("summary").click()
    assert "safety review." in comment.inner_text()
    accessible(page, "audit-timeline")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate(OVERFLOW) <= 0, "the timeline scrolls sideways at 390 px"
    page.screenshot(path=str(SCREENSHOTS / "audit-timeline-390.png"), full_page=True)


def test_the_login_fields_are_equally_wide(page):
    page.goto("/accounts/login/")
    username = page.get_by_label("Username").bounding_box()
    password = page.get_by_label("Password").bounding_box()
    assert username["width"] == password["width"]


def test_a_page_answered_at_a_form_url_puts_its_own_address_back(page, live_server, busy_trail):
    # As a refused form's page would be answered: the timeline's HTML served at another URL,
    # carrying its canonical address (the lead's views set `canonical_url` for real forms).
    team = busy_trail
    login(page, team[Role.AUDITOR])
    canonical = f"/projects/{team.project.slug}/audit/"

    def as_form_answer(route):
        response = route.fetch(url=live_server.url + canonical)
        body = response.text().replace("<body ", f'<body data-canonical-url="{canonical}" ', 1)
        route.fulfill(response=response, body=body)

    page.route("**/form-answer/", as_form_answer)
    page.goto(f"/projects/{team.project.slug}/form-answer/")
    page.wait_for_url(f"**{canonical}")
    assert page.url.endswith(canonical)
