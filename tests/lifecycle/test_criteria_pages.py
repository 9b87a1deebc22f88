"""The criteria page of a gate as its users see it: every criterion with its verdict; the
committee chair and the clinical safety officer add, change and remove criteria written as
expressions, with errors next to the input; everyone else reads (and is refused a POST)."""

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from audits.models import AuditEvent
from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import GateCriterion
from lifecycle.phases import Phase
from tests.factories import make_versions

pytestmark = pytest.mark.django_db

EDITORS = [Role.COMMITTEE_CHAIR, Role.CLINICAL_SAFETY_OFFICER]
READERS = [r for r in Role if r not in EDITORS]


def url(team, phase=Phase.PLANNING) -> str:
    return reverse("gate-criteria", args=[team.project.slug, phase])


def gate(team, phase=Phase.PLANNING):
    return team.project.gates.get(phase=phase)


def add(client, team, expression, **extra):
    data = {"action": "add", "new-expression": expression, "new-required": "on"}
    data.update({f"new-{k}": v for k, v in extra.items()})
    return client.post(url(team), data)


def criterion(team, **fields):
    defaults = {"metric": "auroc", "comparator": ">=", "threshold": 0.8}
    return gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR], gate=gate(team), **{**defaults, **fields}
    )


def events(action: str):
    return AuditEvent.objects.filter(action=action)


@pytest.mark.parametrize("role", EDITORS)
def test_an_editor_adds_a_criterion_written_as_an_expression(client, team, role):
    client.force_login(team[role])
    response = add(
        client,
        team,
        "each_group : ci_low(recall(sex)) >= 0.8",
        min_records="400",
        min_group_records="30",
    )
    assert response.status_code == 302
    assert response["Location"] == url(team)
    saved = GateCriterion.objects.get(gate=gate(team))
    assert (saved.metric, saved.scope, saved.group_attribute, saved.bound) == (
        "recall",
        "each_group",
        "sex",
        "ci_low",
    )
    assert (saved.comparator, saved.threshold, saved.required) == (">=", 0.8, True)
    assert (saved.min_records, saved.min_group_records) == (400, 30)
    event = events("gate_criterion.create").get()
    assert event.actor_user_id == team[role].pk
    page = client.get(response["Location"]).content.decode()
    assert "Criterion “each_group:ci_low(recall(sex)) &gt;= 0.8” added." in page
    assert '<code class="expression">each_group:ci_low(recall(sex)) &gt;= 0.8</code>' in page
    assert "✗ no data" in page
    assert "400 records overall; 30 records per subgroup" in page


def test_a_typo_is_shown_next_to_the_input_and_nothing_is_stored(client, team):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = add(client, team, "ci_low(recal) >= 0.9")
    assert response.status_code == 400
    page = response.content.decode()
    field = page.index('id="id_new-expression"')
    error = page.index("Column 8: “recal” is not a metric. Did you mean recall?")
    assert field < error < page.index("Add criterion", field)
    assert 'value="ci_low(recal) &gt;= 0.9"' in page  # what was typed is kept
    assert 'role="alert"' in page and 'href="#add-criterion"' in page
    assert not GateCriterion.objects.exists()
    assert not events("gate_criterion.create").exists()


def test_a_criterion_the_service_refuses_is_shown_next_to_the_input(client, team):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = add(client, team, "each_group:demographic_parity_difference(sex) <= 0.1")
    assert response.status_code == 400
    page = response.content.decode()
    field = page.index('id="id_new-expression"')
    error = page.index("Fairness differences are between groups: use the overall scope.")
    assert field < error < page.index("Add criterion", field)
    assert not GateCriterion.objects.exists()


def test_bad_minimum_evidence_is_refused_next_to_its_input(client, team):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = add(client, team, "recall >= 0.8", min_records="0")
    assert response.status_code == 400
    page = response.content.decode()
    field = page.index('id="id_new-min_records"')
    assert (
        field
        < page.index("greater than or equal to 1", field)
        < page.index('id="id_new-min_group_records"')
    )
    assert not GateCriterion.objects.exists()


def test_an_editor_changes_a_criterion_and_the_change_is_recorded(client, team):
    existing = criterion(team)
    client.force_login(team[Role.CLINICAL_SAFETY_OFFICER])
    prefix = f"criterion-{existing.pk}"
    response = client.post(
        url(team),
        {
            "action": "save",
            "criterion": existing.pk,
            f"{prefix}-expression": "ci_low(auroc) >= 0.75",
            f"{prefix}-min_records": "200",
        },
    )
    assert response.status_code == 302
    existing.refresh_from_db()
    assert existing.expression == "ci_low(auroc) >= 0.75"
    assert existing.required is False and existing.min_records == 200
    event = events("gate_criterion.update").get()
    assert event.actor_user_id == team[Role.CLINICAL_SAFETY_OFFICER].pk
    page = client.get(url(team)).content.decode()
    assert "Criterion “auroc &gt;= 0.8” is now “ci_low(auroc) &gt;= 0.75”." in page
    assert "advisory" in page


def test_saving_an_unchanged_criterion_records_nothing(client, team):
    existing = criterion(team, min_records=100)
    client.force_login(team[Role.COMMITTEE_CHAIR])
    prefix = f"criterion-{existing.pk}"
    response = client.post(
        url(team),
        {
            "action": "save",
            "criterion": existing.pk,
            f"{prefix}-expression": " auroc >= 0.8 ",
            f"{prefix}-required": "on",
            f"{prefix}-min_records": "100",
        },
    )
    assert response.status_code == 302
    assert not events("gate_criterion.update").exists()
    assert "unchanged" in client.get(url(team)).content.decode()


def test_a_refused_change_opens_its_form_with_the_error_and_keeps_the_criterion(client, team):
    existing = criterion(team)
    client.force_login(team[Role.COMMITTEE_CHAIR])
    prefix = f"criterion-{existing.pk}"
    response = client.post(
        url(team),
        {"action": "save", "criterion": existing.pk, f"{prefix}-expression": "auroc => 0.8"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    card = page.index(f'id="criterion-{existing.pk}"')
    assert page.index("<details open>", card) < page.index(f'id="id_{prefix}-expression"')
    field = page.index(f'id="id_{prefix}-expression"')
    assert field < page.index("Column 7: “=&gt;” is not a comparator; did you mean &gt;=?", field)
    existing.refresh_from_db()
    assert existing.expression == "auroc >= 0.8"


def test_an_editor_removes_a_criterion(client, team):
    existing = criterion(team)
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = client.post(url(team), {"action": "delete", "criterion": existing.pk})
    assert response.status_code == 302
    assert not GateCriterion.objects.exists()
    event = events("gate_criterion.delete").get()
    assert event.target_id == str(existing.pk)
    assert "Criterion “auroc &gt;= 0.8” removed." in client.get(url(team)).content.decode()


def test_a_criterion_of_another_gate_is_not_found(client, team):
    other = gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=gate(team, Phase.DATA),
        metric="auroc",
        comparator=">=",
        threshold=0.8,
    )
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = client.post(url(team), {"action": "delete", "criterion": other.pk})
    assert response.status_code == 404
    assert GateCriterion.objects.filter(pk=other.pk).exists()


@pytest.mark.parametrize("role", READERS)
def test_other_roles_read_the_criteria_without_forms_and_are_refused_a_post(client, team, role):
    existing = criterion(team)
    client.force_login(team[role])
    page = client.get(url(team))
    assert page.status_code == 200
    text = page.content.decode()
    assert "auroc &gt;= 0.8" in text
    assert "Add a criterion" not in text and "Save criterion" not in text
    assert "Criteria are set by the committee chair and the clinical safety officer." in text
    for data in (
        {"action": "add", "new-expression": "recall >= 0.5"},
        {"action": "delete", "criterion": existing.pk},
    ):
        assert client.post(url(team), data).status_code == 403
    assert list(GateCriterion.objects.all()) == [existing]


def test_an_outsider_gets_404_and_an_anonymous_visitor_the_login_page(client, team):
    client.force_login(team.outsider)
    assert client.get(url(team)).status_code == 404
    assert client.post(url(team), {"action": "add", "new-expression": "f1 > 0"}).status_code == 404
    client.logout()
    response = client.get(url(team))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("pk", ["", "abc", "²", "999999"])
def test_a_criterion_that_is_not_there_is_not_found(client, team, pk):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    assert client.post(url(team), {"action": "delete", "criterion": pk}).status_code == 404


def test_an_unknown_action_is_not_found(client, team):
    existing = criterion(team)
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = client.post(url(team), {"action": "explode", "criterion": existing.pk})
    assert response.status_code == 404


def test_an_unknown_phase_is_not_found(client, team):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    assert client.get(url(team, "nonsense")).status_code == 404


def test_the_verdict_is_shown_with_the_observed_value(client, team):
    passing = criterion(team, metric="auroc", threshold=0.6)
    failing = criterion(team, metric="recall", bound="ci_low", threshold=0.99)
    model, dataset = make_versions(team)
    run = evaluation_services.evaluation_run_start(
        actor=team.creator,
        gate=gate(team),
        model_version=model,
        dataset_version=dataset,
        upload=ContentFile(
            binary_classifier(seed=1, n=400, prevalence=0.3, separation=1.5), name="r.jsonl"
        ),
        metrics=["auroc", "recall"],
        resamples=200,
    )
    run_evaluation.apply(args=[run.pk])
    client.force_login(team[Role.COMMITTEE_MEMBER])
    page = client.get(url(team)).content.decode()
    first = page.index(f'id="criterion-{passing.pk}"')
    second = page.index(f'id="criterion-{failing.pk}"')
    assert "✓ pass" in page[first:second]
    assert "observed 0." in page[first:second]
    assert "✗ fail" in page[second:]


def test_a_hostile_group_attribute_is_shown_as_text_and_the_page_obeys_the_csp(client, team):
    from tests.security.test_xss_csp import Markup

    client.force_login(team[Role.COMMITTEE_CHAIR])
    hostile = "<img src=x onerror=alert`1`>"
    response = add(client, team, f"each_group:recall({hostile}) >= 0.5")
    assert response.status_code == 302
    assert GateCriterion.objects.get().group_attribute == hostile
    page = client.get(url(team)).content.decode()
    assert hostile not in page
    assert "&lt;img src=x onerror=alert`1`&gt;" in page
    markup = Markup(page)
    assert markup.inline_scripts() == [] and markup.handlers() == []
    assert markup.style_attributes() == []
