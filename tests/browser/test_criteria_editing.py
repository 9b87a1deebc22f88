"""The committee chair edits gate criteria in a real browser: an expression typed in is parsed
and saved, a typo is refused with the error next to the input, and the sign-off policy pages
work for a policy administrator. axe-core checks each page."""

import pytest
from django.contrib.auth.models import Permission

from governance.roles import Role
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import GateCriterion, SignOffPolicy
from tests.browser.test_committee import accessible, login
from tests.factories import UserFactory, make_team

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_chair_edits_a_criterion_as_an_expression(page):
    team = make_team()
    gate = team.project.gates.get(phase="planning")
    criterion = gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR], gate=gate, metric="auroc", comparator=">=", threshold=0.8
    )
    login(page, team[Role.COMMITTEE_CHAIR])
    page.goto(f"/projects/{team.project.slug}/gates/planning/criteria/")
    accessible(page, "criteria")

    # A typo: refused, the error right under the input, the text kept to correct.
    add = page.locator("#add-criterion")
    add.get_by_label("Criterion").fill("ci_low(recal) >= 0.9")
    add.get_by_role("button", name="Add criterion").click()
    add = page.locator("#add-criterion")
    field = add.get_by_label("Criterion")
    assert field.input_value() == "ci_low(recal) >= 0.9"
    error = add.locator("#id_new-expression_error")
    assert error.inner_text().endswith("Column 8: “recal” is not a metric. Did you mean recall?")
    # Next to the input: directly below it on the screen.
    box, under = field.bounding_box(), error.bounding_box()
    assert 0 <= under["y"] - (box["y"] + box["height"]) < 40
    assert "see the error next to the input" in page.get_by_role("alert").first.inner_text()
    accessible(page, "criteria-refused")
    assert GateCriterion.objects.count() == 1

    # Corrected: parsed into its fields and saved.
    field.fill("each_group: ci_low( recall(sex) ) >= 0.85")
    add.get_by_label("Minimum records per subgroup").fill("30")
    add.get_by_role("button", name="Add criterion").click()
    page.wait_for_url("**/gates/planning/criteria/")
    assert "added" in page.locator(".messages").inner_text()
    assert page.get_by_text("each_group:ci_low(recall(sex)) >= 0.85", exact=True).is_visible()
    added = GateCriterion.objects.exclude(pk=criterion.pk).get()
    assert (added.scope, added.bound, added.metric, added.group_attribute) == (
        "each_group",
        "ci_low",
        "recall",
        "sex",
    )
    assert added.min_group_records == 30

    # The existing criterion changed through its own form.
    card = page.locator(f"#criterion-{criterion.pk}")
    card.get_by_text("Change or remove this criterion").click()
    card.get_by_label("Criterion").fill("ci_low(auroc) >= 0.75")
    card.get_by_role("button", name="Save criterion").click()
    page.wait_for_url("**/gates/planning/criteria/")
    assert "is now “ci_low(auroc) >= 0.75”" in page.locator(".messages").inner_text()
    criterion.refresh_from_db()
    assert (criterion.bound, criterion.threshold) == ("ci_low", 0.75)


def test_a_committee_member_reads_the_criteria_without_forms(page):
    team = make_team()
    gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=team.project.gates.get(phase="planning"),
        metric="recall",
        bound="ci_low",
        comparator=">=",
        threshold=0.9,
    )
    login(page, team[Role.COMMITTEE_MEMBER])
    page.goto(f"/projects/{team.project.slug}/gates/planning/criteria/")
    assert page.get_by_text("ci_low(recall) >= 0.9", exact=True).is_visible()
    assert page.get_by_role("button", name="Add criterion").count() == 0
    assert page.get_by_role("textbox").count() == 0


def test_a_policy_administrator_copies_edits_and_activates_a_policy(page):
    admin = UserFactory(username="policy-admin")
    admin.user_permissions.add(Permission.objects.get(codename="change_signoffpolicy"))
    login(page, admin)
    page.get_by_role("link", name="Sign-off policies").click()
    page.wait_for_url("**/policies/")
    accessible(page, "policies")
    page.get_by_role("link", name="v1").click()
    page.get_by_role("textbox", name="New version").fill("2")
    page.get_by_role("button", name="Create the draft version").click()
    page.wait_for_url("**/policies/2/")
    accessible(page, "policy-draft")
    page.get_by_label("Role to add for Planning, Low risk").select_option(label="Data steward")
    page.get_by_role("button", name="Add to Planning, Low risk").click()
    page.wait_for_url("**/policies/2/")
    assert "Data steward" in page.locator("#cell-planning-low").inner_text()
    page.get_by_role("button", name="Activate v2").click()
    page.wait_for_url("**/policies/2/")
    assert "now active" in page.locator(".messages").inner_text()
    policy = SignOffPolicy.objects.get(is_active=True)
    assert policy.version == "2"
    assert policy.requirements.filter(phase="planning", risk_tier="low", role="data_steward")
