"""The model facts of a project: the service that changes them (who may, what it refuses,
what the audit trail records) and the page where the project lead keeps them and every
member reads them with what the CHAI card and HTI-1 still lack."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from audits.models import Action, AuditEvent
from governance.roles import Role
from lifecycle.projects.facts import FACTS, MAX_FACT_LENGTH
from lifecycle.projects.models import ModelFacts
from lifecycle.projects.services import model_facts_update

pytestmark = pytest.mark.django_db


def events(team):
    return AuditEvent.objects.filter(
        chain__project=team.project, action=Action.MODEL_FACTS_UPDATE
    ).order_by("id")


def stored(team) -> dict:
    row = ModelFacts.objects.filter(project=team.project).first()
    return row.facts if row else {}


def update(team, actor=None, reason="", **changes):
    return model_facts_update(
        actor=actor or team.creator, project=team.project, changes=changes, reason=reason
    )


# --- The service ---------------------------------------------------------------------------------


def test_the_lead_sets_facts_stored_stripped_in_one_event(team):
    row = update(
        team,
        developer="  Clinical AI Lab \n",
        release_stage="Pilot",
        reason="For the CHAI card.",
    )
    assert stored(team) == {"developer": "Clinical AI Lab", "release_stage": "Pilot"}
    assert row.updated_by == team.creator
    [event] = events(team)
    assert event.before == {"developer": "", "release_stage": ""}
    assert event.after == {"developer": "Clinical AI Lab", "release_stage": "Pilot"}
    assert event.reason == "For the CHAI card."
    assert event.actor_user == team.creator
    assert event.target_text == f"Model facts of {team.project}"


def test_the_event_holds_only_the_facts_that_changed(team):
    update(team, developer="Clinical AI Lab", release_stage="Pilot")
    update(team, developer="Clinical AI Lab", release_stage="General availability")
    _, second = events(team)
    assert second.before == {"release_stage": "Pilot"}
    assert second.after == {"release_stage": "General availability"}


def test_facts_not_named_keep_their_value(team):
    update(team, developer="Clinical AI Lab", funding_source="Operating budget")
    update(team, developer="Clinical AI Lab, Radiology")
    assert stored(team) == {
        "developer": "Clinical AI Lab, Radiology",
        "funding_source": "Operating budget",
    }


def test_nothing_changed_writes_nothing_and_records_no_event(team):
    update(team)  # nothing at all: not even an empty row
    assert not ModelFacts.objects.filter(project=team.project).exists()
    row = update(team, developer="Clinical AI Lab")
    changed_at = row.updated_at
    again = update(team, developer=" Clinical AI Lab ", release_stage="")
    assert again.updated_at == changed_at
    assert events(team).count() == 1


def test_a_blank_value_clears_the_fact_which_is_missing_again(team):
    update(team, developer="Clinical AI Lab", release_stage="Pilot")
    update(team, release_stage="   ")
    assert stored(team) == {"developer": "Clinical AI Lab"}
    assert events(team).last().after == {"release_stage": ""}


@pytest.mark.parametrize("role", [r for r in Role if r != Role.PROJECT_LEAD])
def test_other_roles_are_refused_and_nothing_changes(team, role):
    with pytest.raises(PermissionDenied, match="edit the project's details"):
        update(team, actor=team[role], developer="Someone else")
    assert stored(team) == {} and not events(team).exists()


def test_an_outsider_is_refused(team):
    with pytest.raises(PermissionDenied):
        update(team, actor=team.outsider, developer="Someone else")
    assert not events(team).exists()


def test_an_unknown_fact_is_refused_by_name(team):
    with pytest.raises(ValidationError) as refused:
        update(team, developer="Clinical AI Lab", colour="blue", mood="fine")
    assert refused.value.message_dict == {"facts": ["No such model fact: colour, mood."]}
    assert stored(team) == {} and not events(team).exists()


def test_a_value_too_long_is_refused_naming_the_fact_and_the_limit(team):
    update(team, known_risks="x" * MAX_FACT_LENGTH)  # exactly the limit is fine
    with pytest.raises(ValidationError) as refused:
        update(team, known_risks="y" * (MAX_FACT_LENGTH + 1))
    assert refused.value.message_dict == {
        "known_risks": [
            f"“Known risks and limitations” is {MAX_FACT_LENGTH + 1:,} characters long; "
            f"at most {MAX_FACT_LENGTH:,} are allowed."
        ]
    }
    assert stored(team)["known_risks"] == "x" * MAX_FACT_LENGTH


def test_a_nul_character_is_refused(team):
    with pytest.raises(ValidationError) as refused:
        update(team, developer="Clinical\x00Lab")
    assert refused.value.message_dict == {
        "developer": ["“Developer” contains a NUL character, which is not allowed."]
    }
    with pytest.raises(ValidationError):
        update(team, developer="Clinical AI Lab", reason="because\x00")
    assert stored(team) == {} and not events(team).exists()


def test_a_value_that_is_not_text_is_refused(team):
    with pytest.raises(ValidationError) as refused:
        update(team, release_date=20250915)
    assert refused.value.message_dict == {"release_date": ["“Release date” must be text."]}


# --- The page ------------------------------------------------------------------------------------


def page_url(team) -> str:
    return reverse("model-facts", args=[team.project.slug])


def test_the_page_shows_sections_uses_and_what_each_export_lacks(client, team):
    update(team, developer="Clinical AI Lab")
    client.force_login(team.creator)
    response = client.get(page_url(team))
    assert response.status_code == 200
    page = response.content.decode()
    for section in {fact.section for fact in FACTS}:
        assert f"<legend><strong>{section}</strong></legend>" in page
    # Its help, which exports use it, one line for a short fact, paragraphs for the others.
    assert "Who developed the intervention (organisation or team)." in page
    assert "Used by CHAI card: Model developer; HTI-1 (b)(11)(iv)(B)(1)(i)" in page
    assert '<input type="text" name="developer" value="Clinical AI Lab"' in page
    assert '<textarea name="known_risks"' in page
    chai, hti1 = page.split("For the CHAI Applied Model Card")[1].split(
        "For the HTI-1 source attributes"
    )
    hti1 = hti1.split("</section>")[0]
    assert '<a href="#fact-developer_contact">Developer contact</a>' in chai
    assert '<a href="#fact-developer_contact">Developer contact</a>' in hti1
    assert '<a href="#fact-developer">' not in chai + hti1
    # Used by HTI-1 only; optional facts are never missing.
    assert '<a href="#fact-output_type">' in hti1 and '<a href="#fact-output_type">' not in chai
    assert "#fact-keywords" not in chai
    assert 'id="fact-output_type"' in page


def test_the_lead_saves_facts_and_sees_them_saved(client, team):
    client.force_login(team.creator)
    data = {fact.key: "" for fact in FACTS}
    data.update(developer="Clinical AI Lab", release_stage="Pilot", reason="First draft.")
    response = client.post(page_url(team), data)
    assert response.status_code == 302 and response["Location"] == page_url(team)
    assert stored(team) == {"developer": "Clinical AI Lab", "release_stage": "Pilot"}
    event = events(team).get()
    assert event.reason == "First draft." and event.actor_user == team.creator
    page = client.get(response["Location"]).content.decode()
    assert "Model facts saved (2 changed: Developer, Release stage)." in page
    assert '<input type="text" name="release_stage" value="Pilot"' in page
    assert team.creator.get_full_name() in page.split('id="last-change"')[1].split("</p>")[0]


def test_saving_only_sends_the_facts_that_were_edited(client, team):
    client.force_login(team.creator)
    page = client.get(page_url(team)).content.decode()
    assert '<input type="hidden" name="initial-funding_source"' in page
    loaded = {fact.key: "" for fact in FACTS} | {f"initial-{f.key}": "" for f in FACTS}
    # Someone else gives the funding source after this page was loaded (blank) ...
    update(team, funding_source="Operating budget")
    # ... and this user edits only the developer: the blank funding source is not sent.
    client.post(page_url(team), {**loaded, "developer": "Clinical AI Lab"})
    assert stored(team) == {"developer": "Clinical AI Lab", "funding_source": "Operating budget"}
    # Clearing a fact the page was loaded with is an edit.
    loaded |= {"developer": "", "initial-developer": "Clinical AI Lab"}
    client.post(page_url(team), loaded)
    assert stored(team) == {"funding_source": "Operating budget"}


def test_a_short_fact_with_line_breaks_is_shown_as_paragraphs(client, team):
    update(team, developer="Clinical AI Lab\nRadiology department")
    client.force_login(team.creator)
    page = client.get(page_url(team)).content.decode()
    assert '<textarea name="developer"' in page
    assert '<input type="text" name="release_stage"' in page


def test_line_breaks_from_a_browser_are_stored_as_line_feeds(client, team):
    update(team, known_risks="First line.\nSecond line.")
    client.force_login(team.creator)
    sent = "First line.\r\nSecond line."
    client.post(page_url(team), {"known_risks": sent, "initial-known_risks": sent})
    client.post(page_url(team), {"known_risks": sent})  # no hidden initial: the service decides
    assert stored(team)["known_risks"] == "First line.\nSecond line."
    assert events(team).count() == 1


def test_a_refused_value_is_shown_next_to_its_field(client, team):
    client.force_login(team.creator)
    data = {fact.key: "" for fact in FACTS}
    data.update(developer="Clinical AI Lab", known_risks="r" * (MAX_FACT_LENGTH + 1))
    response = client.post(page_url(team), data)
    assert response.status_code == 400
    page = response.content.decode()
    assert '<strong>Not saved:</strong> see the error next to <a href="#fact-known_risks">' in page
    field = page.split('id="fact-known_risks"')[1].split("</div>")[0]
    assert f"at most {MAX_FACT_LENGTH:,} are allowed." in field
    assert stored(team) == {} and not events(team).exists()


def test_posting_unchanged_facts_says_so(client, team):
    update(team, developer="Clinical AI Lab")
    client.force_login(team.creator)
    data = {fact.key: "" for fact in FACTS}
    data["developer"] = "Clinical AI Lab"
    response = client.post(page_url(team), data, follow=True)
    assert "Nothing changed: the model facts are as they were." in response.content.decode()
    assert events(team).count() == 1


def test_an_auditor_reads_the_facts_and_the_missing_list_but_cannot_change_them(client, team):
    update(team, developer="Clinical AI Lab", known_risks="Misses atypical cases.\nSecond line.")
    auditor = team[Role.AUDITOR]
    client.force_login(auditor)
    page = client.get(page_url(team)).content.decode()
    assert "Read-only: the project lead keeps the model facts." in page
    assert 'name="developer"' not in page and "Save model facts" not in page
    assert "Clinical AI Lab" in page
    assert "Misses atypical cases.<br>Second line." in page
    assert '<a href="#fact-developer_contact">Developer contact</a>' in page
    response = client.post(page_url(team), {"developer": "An auditor's view"})
    assert response.status_code == 403
    assert stored(team)["developer"] == "Clinical AI Lab"


def test_outsiders_get_404_and_anonymous_users_the_login_page(client, team):
    client.force_login(team.outsider)
    assert client.get(page_url(team)).status_code == 404
    assert client.post(page_url(team), {"developer": "x"}).status_code == 404
    client.logout()
    response = client.get(page_url(team))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert stored(team) == {}


def test_markup_in_a_value_is_shown_as_text(client, team):
    update(team, developer='<script>alert("x")</script>', known_risks="<b>bold</b>")
    for user in (team.creator, team[Role.AUDITOR]):
        client.force_login(user)
        page = client.get(page_url(team)).content.decode()
        assert "<script>alert" not in page and "<b>bold</b>" not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
        assert "&lt;b&gt;bold&lt;/b&gt;" in page
