"""The model facts over the API, as a developer's pipeline or a compliance script uses them:
every declared fact with what each export lacks, changed with PATCH by the project lead,
refused in the API's one error body."""

import pytest

from audits.models import Action, AuditEvent
from governance.roles import Role
from lifecycle.projects.facts import FACTS, MAX_FACT_LENGTH, missing_facts
from lifecycle.projects.models import ModelFacts
from lifecycle.projects.services import model_facts_update
from tests.api.helpers import client_for
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def url(team) -> str:
    return f"/api/v1/projects/{team.project.slug}/model-facts/"


def stored(team) -> dict:
    row = ModelFacts.objects.filter(project=team.project).first()
    return row.facts if row else {}


def events(team):
    return AuditEvent.objects.filter(chain__project=team.project, action=Action.MODEL_FACTS_UPDATE)


def patch(client, team, body, **extra):
    return client.patch(url(team), body, format="json", **extra)


def test_get_lists_every_fact_and_what_each_export_lacks(team):
    response = client_for(team[Role.AUDITOR]).get(url(team))
    assert response.status_code == 200
    body = response.json()
    assert body["facts"] == {fact.key: "" for fact in FACTS}
    assert list(body["facts"]) == [fact.key for fact in FACTS]
    assert body["missing"] == {
        "chai": [fact.key for fact in missing_facts({}, "chai")],
        "hti1": [fact.key for fact in missing_facts({}, "hti1")],
    }
    assert "developer" in body["missing"]["chai"] and "output_type" not in body["missing"]["chai"]
    assert "keywords" not in body["missing"]["chai"]  # optional: never missing
    assert body["updated_at"] is None and body["updated_by"] is None


def test_get_shows_the_values_and_who_changed_them(team):
    model_facts_update(
        actor=team.creator, project=team.project, changes={"developer": "Clinical AI Lab"}
    )
    body = client_for(team[Role.COMMITTEE_MEMBER]).get(url(team)).json()
    assert body["facts"]["developer"] == "Clinical AI Lab"
    assert body["facts"]["release_stage"] == ""
    assert "developer" not in body["missing"]["chai"] + body["missing"]["hti1"]
    assert body["updated_by"] == {
        "username": team.creator.username,
        "name": team.creator.get_full_name(),
    }
    assert body["updated_at"].endswith("Z") or "+00:00" in body["updated_at"]


def test_the_lead_patches_facts_and_the_change_is_attributed_to_the_token(team):
    response = patch(
        client_for(team.creator),
        team,
        {
            "facts": {"developer": " Clinical AI Lab ", "output_type": "Classification"},
            "reason": "From the vendor's model card.",
        },
        HTTP_X_REQUEST_ID="facts-1",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["facts"]["developer"] == "Clinical AI Lab"
    assert "output_type" not in body["missing"]["hti1"]
    assert body["updated_by"]["username"] == team.creator.username
    assert stored(team) == {"developer": "Clinical AI Lab", "output_type": "Classification"}
    event = events(team).get()
    assert event.actor_type == "token" and event.actor_token_id is not None
    assert event.after == {"developer": "Clinical AI Lab", "output_type": "Classification"}
    assert (event.reason, event.request_id) == ("From the vendor's model card.", "facts-1")


def test_a_patch_that_changes_nothing_records_nothing(team):
    client = client_for(team.creator)
    patch(client, team, {"facts": {"developer": "Clinical AI Lab"}})
    response = patch(client, team, {"facts": {"developer": "Clinical AI Lab"}})
    assert response.status_code == 200
    assert patch(client, team, {}).status_code == 200
    assert events(team).count() == 1


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.COMMITTEE_CHAIR, Role.CLINICAL_LEAD])
def test_other_roles_are_refused_with_403(team, role):
    response = patch(client_for(team[role]), team, {"facts": {"developer": "x"}})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "edit the project's details" in response.json()["error"]["message"]
    assert stored(team) == {} and not events(team).exists()


def test_a_read_only_token_cannot_patch(team):
    client = client_for(team.creator, read_only=True)
    assert client.get(url(team)).status_code == 200
    response = patch(client, team, {"facts": {"developer": "x"}})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This API token is read-only."
    assert stored(team) == {}


def test_outsiders_and_tokens_of_other_projects_get_404(team):
    outsider = client_for(team.outsider)
    assert outsider.get(url(team)).json()["error"]["code"] == "not_found"
    assert patch(outsider, team, {"facts": {"developer": "x"}}).status_code == 404
    # A token of the lead limited to another of the lead's projects.
    elsewhere = client_for(team.creator, projects=[make_project(team.creator)])
    assert elsewhere.get(url(team)).status_code == 404
    assert client_for(None).get(url(team)).status_code == 401
    assert stored(team) == {}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"facts": {"developer": "x", "colour": "blue"}},
            "facts",
            "No such model fact: colour.",
        ),
        (
            {"facts": {"known_risks": "r" * (MAX_FACT_LENGTH + 1)}},
            "known_risks",
            f"“Known risks and limitations” is {MAX_FACT_LENGTH + 1:,} characters long; "
            f"at most {MAX_FACT_LENGTH:,} are allowed.",
        ),
        (
            {"facts": {"developer": "Clinical\u0000Lab"}},
            "developer",
            "“Developer” contains a NUL character, which is not allowed.",
        ),
        ({"facts": {"release_date": 2025}}, "facts", "Each model fact is text: release_date."),
        ({"facts": ["developer"]}, "facts", 'An object of model facts: {"key": "text", …}.'),
        (
            {"fact": {"developer": "x"}},
            "fact",
            "Not a field of this request: send “facts” and “reason”.",
        ),
    ],
)
def test_refusals_name_the_fact_in_the_api_error_body(team, body, field, message):
    response = patch(client_for(team.creator), team, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {field: [message]}
    assert stored(team) == {} and not events(team).exists()


def test_only_json_is_accepted(team):
    response = client_for(team.creator).patch(url(team), {"facts": "x"}, format="multipart")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
