"""Gate criteria over the API in the expression form: POST and PATCH accept `expression`
instead of the separate fields (never both), errors say where, and minimum evidence is in and
out."""

import pytest

from audits.models import AuditEvent
from governance.roles import Role
from lifecycle.gates.models import GateCriterion
from tests.api.helpers import client_for

pytestmark = pytest.mark.django_db


def criteria_url(team) -> str:
    return f"/api/v1/projects/{team.project.slug}/gates/planning/criteria/"


@pytest.fixture
def chair(team):
    return client_for(team[Role.COMMITTEE_CHAIR])


def test_a_criterion_is_created_from_its_expression(team, chair):
    response = chair.post(
        criteria_url(team),
        {
            "expression": "worst_group:ci_low(recall(sex)) >= 0.8",
            "required": False,
            "min_records": 400,
            "min_group_records": 30,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["expression"] == "worst_group:ci_low(recall(sex)) >= 0.8"
    assert {k: body[k] for k in ("metric", "scope", "group_attribute", "bound")} == {
        "metric": "recall",
        "scope": "worst_group",
        "group_attribute": "sex",
        "bound": "ci_low",
    }
    assert (body["comparator"], body["threshold"], body["required"]) == (">=", 0.8, False)
    assert (body["min_records"], body["min_group_records"]) == (400, 30)
    assert body["verdict"]["status"] == "no data"
    assert AuditEvent.objects.filter(action="gate_criterion.create").count() == 1


def test_the_separate_fields_still_work_and_default_as_before(team, chair):
    response = chair.post(
        criteria_url(team), {"metric": "auroc", "comparator": ">=", "threshold": 0.85}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["expression"] == "auroc >= 0.85"
    assert (body["scope"], body["bound"], body["required"]) == ("overall", "value", True)
    assert (body["min_records"], body["min_group_records"]) == (None, None)


def test_expression_and_separate_fields_together_are_refused(team, chair):
    response = chair.post(
        criteria_url(team),
        {"expression": "recall >= 0.9", "metric": "auroc", "threshold": 0.5},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"]["expression"] == [
        "Give either expression or the separate fields, not both: found expression and "
        "metric, threshold."
    ]
    assert not GateCriterion.objects.exists()


def test_neither_form_names_what_is_missing(team, chair):
    response = chair.post(criteria_url(team), {"required": True}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"metric", "comparator", "threshold"}
    assert fields["metric"] == ["This field is required unless expression is given."]


def test_a_typo_in_the_expression_says_where(team, chair):
    response = chair.post(criteria_url(team), {"expression": "ci_low(recal) >= 0.9"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"]["expression"] == [
        "Column 8: “recal” is not a metric. Did you mean recall?"
    ]
    assert "Column 8" in error["message"]
    assert not GateCriterion.objects.exists()


def test_a_parsed_criterion_the_service_refuses_is_a_400(team, chair):
    response = chair.post(
        criteria_url(team), {"expression": "each_group:demographic_parity_difference(sex) <= 0.1"}
    )
    assert response.status_code == 400
    assert "use the overall scope" in response.json()["error"]["message"]


def test_patch_accepts_an_expression_and_minimum_evidence(team, chair):
    created = chair.post(
        criteria_url(team), {"expression": "auroc >= 0.85", "required": False}, format="json"
    ).json()
    url = f"{criteria_url(team)}{created['id']}/"
    response = chair.patch(
        url, {"expression": "each_group:recall(sex) > 0.7", "min_group_records": 25}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["expression"] == "each_group:recall(sex) > 0.7"
    assert body["min_group_records"] == 25
    assert body["required"] is False  # not given: unchanged
    response = chair.patch(url, {"min_records": None, "threshold": 0.75}, format="json")
    assert response.json()["expression"] == "each_group:recall(sex) > 0.75"
    assert AuditEvent.objects.filter(action="gate_criterion.update").count() == 2


def test_patch_refuses_both_forms_and_bad_minimums(team, chair):
    created = chair.post(criteria_url(team), {"expression": "auroc >= 0.85"}).json()
    url = f"{criteria_url(team)}{created['id']}/"
    both = chair.patch(url, {"expression": "auroc >= 0.9", "comparator": ">"}, format="json")
    assert both.status_code == 400
    assert "not both" in both.json()["error"]["fields"]["expression"][0]
    zero = chair.patch(url, {"min_records": 0}, format="json")
    assert zero.status_code == 400 and "min_records" in zero.json()["error"]["fields"]
    assert GateCriterion.objects.get().expression == "auroc >= 0.85"


def test_only_the_roles_that_set_criteria_may_use_expressions(team):
    lead = client_for(team.creator)
    response = lead.post(criteria_url(team), {"expression": "auroc >= 0.85"})
    assert response.status_code == 403
    assert not GateCriterion.objects.exists()


def test_the_list_carries_minimum_evidence(team, chair):
    chair.post(criteria_url(team), {"expression": "auroc >= 0.85", "min_records": 100})
    (row,) = chair.get(criteria_url(team)).json()["results"]
    assert row["min_records"] == 100 and row["min_group_records"] is None
