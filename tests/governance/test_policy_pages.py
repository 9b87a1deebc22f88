"""The sign-off policy pages as a policy administrator sees them: every version with the
projects that keep it, one version's phase × risk tier table, a draft edited cell by cell,
a new version copied from any other, activation; and nothing for everyone else."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from audits.models import AuditEvent
from governance.models import User
from governance.roles import Role
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import SignOffPolicy, SignOffRequirement
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LIST = reverse("signoff-policies")


def detail(version: str) -> str:
    return reverse("signoff-policy", args=[version])


@pytest.fixture
def policy_admin() -> User:
    user = UserFactory(username="policy-admin")
    user.user_permissions.add(Permission.objects.get(codename="change_signoffpolicy"))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def draft(policy_admin) -> SignOffPolicy:
    return gate_services.signoff_policy_create_version(
        actor=policy_admin, source=SignOffPolicy.objects.get(version="1"), version="2"
    )


def events(action: str):
    return AuditEvent.objects.filter(action=action)


def test_the_list_shows_every_version_and_the_projects_that_keep_it(
    client, team, policy_admin, draft
):
    client.force_login(policy_admin)
    response = client.get(LIST)
    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="{LIST}">Sign-off policies</a>' in page  # the nav link
    active, new = page.index(f'href="{detail("1")}"'), page.index(f'href="{detail("2")}"')
    assert active < new  # the active one first
    assert "✓ active" in page[active:new] and "draft" in page[new:]
    # The administrator is no member of the project: counted, not named.
    assert "1 you cannot see" in page[active:new]
    assert team.project.name not in page


def test_the_projects_the_administrator_may_see_are_named(client, team, draft):
    client.force_login(team.creator)
    team.creator.user_permissions.add(Permission.objects.get(codename="change_signoffpolicy"))
    page = client.get(LIST).content.decode()
    assert team.project.name in page


@pytest.mark.parametrize("role", [Role.COMMITTEE_CHAIR, Role.PROJECT_LEAD, Role.AUDITOR])
def test_without_the_permission_every_page_and_change_is_refused(client, team, role, draft):
    client.force_login(team[role])
    assert "Sign-off policies" not in client.get("/").content.decode()
    assert client.get(LIST).status_code == 403
    assert client.get(detail("2")).status_code == 403
    response = client.post(
        detail("2"),
        {"action": "add-role", "phase": "planning", "risk_tier": "low", "role": "auditor"},
    )
    assert response.status_code == 403
    assert client.post(detail("2"), {"action": "activate"}).status_code == 403
    assert not SignOffPolicy.objects.get(version="2").is_active


def test_an_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(LIST)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_an_unknown_version_is_not_found(client, policy_admin):
    client.force_login(policy_admin)
    assert client.get(detail("99")).status_code == 404


def test_the_active_version_is_a_read_only_table(client, policy_admin):
    client.force_login(policy_admin)
    page = client.get(detail("1")).content.decode()
    policy = SignOffPolicy.objects.get(version="1")
    for requirement in policy.requirements.filter(phase="planning", risk_tier="high"):
        cell = page.index('id="cell-planning-high"')
        assert requirement.get_role_display() in page[cell : page.index("</td>", cell)]
    assert 'value="remove-role"' not in page and 'value="add-role"' not in page
    assert "cannot change: copy it to a new version" in page
    assert "Activate v1" not in page  # already active


def test_a_new_version_is_copied_from_the_one_shown(client, policy_admin):
    client.force_login(policy_admin)
    response = client.post(
        detail("1"), {"action": "new-version", "version": " 2026-07 ", "name": "Stricter"}
    )
    assert response.status_code == 302 and response["Location"] == detail("2026-07")
    copy = SignOffPolicy.objects.get(version="2026-07")
    assert copy.name == "Stricter" and not copy.is_active
    assert copy.requirements.count() == SignOffPolicy.objects.get(version="1").requirements.count()
    assert events("signoff_policy.create_version").get().actor_user_id == policy_admin.pk
    page = client.get(response["Location"]).content.decode()
    assert "Draft version v2026-07 created" in page
    assert 'value="remove-role"' in page and 'value="add-role"' in page


def test_a_version_that_exists_is_refused_next_to_the_input(client, policy_admin, draft):
    client.force_login(policy_admin)
    response = client.post(detail("1"), {"action": "new-version", "version": "2"})
    assert response.status_code == 400
    page = response.content.decode()
    field = page.index('id="id_version"')
    assert field < page.index("already exists", field) < page.index("Create the draft version")
    assert SignOffPolicy.objects.count() == 2


def test_a_draft_gains_and_loses_a_required_role(client, policy_admin, draft):
    client.force_login(policy_admin)
    cell = {"phase": "planning", "risk_tier": "low"}
    assert not draft.requirements.filter(**cell, role="data_steward").exists()
    response = client.post(detail("2"), {"action": "add-role", **cell, "role": "data_steward"})
    assert response.status_code == 302
    added = draft.requirements.get(**cell, role="data_steward")
    assert events("signoff_requirement.save").get().actor_user_id == policy_admin.pk
    page = client.get(detail("2")).content.decode()
    assert "Required role added." in page
    response = client.post(detail("2"), {"action": "remove-role", "requirement": added.pk})
    assert response.status_code == 302
    assert not SignOffRequirement.objects.filter(pk=added.pk).exists()
    assert events("signoff_requirement.delete").count() == 1


def test_a_role_already_required_is_refused_in_its_cell(client, policy_admin, draft):
    client.force_login(policy_admin)
    existing = draft.requirements.filter(phase="data", risk_tier="medium").first()
    response = client.post(
        detail("2"),
        {"action": "add-role", "phase": "data", "risk_tier": "medium", "role": existing.role},
    )
    assert response.status_code == 400
    page = response.content.decode()
    cell = page.index('id="cell-data-medium"')
    assert page.index('class="errorlist"', cell) < page.index("</td>", cell)
    assert "already exists" in page[cell : page.index("</td>", cell)]
    assert 'href="#cell-data-medium"' in page


def test_a_role_that_never_signs_is_refused(client, policy_admin, draft):
    client.force_login(policy_admin)
    response = client.post(
        detail("2"),
        {"action": "add-role", "phase": "data", "risk_tier": "low", "role": "auditor"},
    )
    assert response.status_code == 400
    assert "not one of the available choices" in response.content.decode()


def test_a_policy_in_use_cannot_change_even_by_a_crafted_post(client, policy_admin):
    client.force_login(policy_admin)
    requirement = SignOffPolicy.objects.get(version="1").requirements.first()
    response = client.post(detail("1"), {"action": "remove-role", "requirement": requirement.pk})
    assert response.status_code == 400
    assert "create a new version instead" in response.content.decode()
    assert SignOffRequirement.objects.filter(pk=requirement.pk).exists()


def test_an_incomplete_draft_is_not_activated(client, policy_admin, draft):
    draft.requirements.filter(phase="monitoring", risk_tier="high").delete()
    client.force_login(policy_admin)
    page = client.get(detail("2")).content.decode()
    cell = page.index('id="cell-monitoring-high"')
    assert "✗ no approver" in page[cell : page.index("</td>", cell)]
    response = client.post(detail("2"), {"action": "activate"})
    assert response.status_code == 400
    assert "names no approver for: Monitoring and maintenance / High" in response.content.decode()
    assert SignOffPolicy.objects.get(is_active=True).version == "1"


def test_a_complete_draft_is_activated_for_new_projects(client, policy_admin, draft):
    client.force_login(policy_admin)
    response = client.post(detail("2"), {"action": "activate"})
    assert response.status_code == 302
    assert SignOffPolicy.objects.get(is_active=True).version == "2"
    assert events("signoff_policy.activate").get().actor_user_id == policy_admin.pk
    page = client.get(detail("2")).content.decode()
    assert "Version v2 is now active" in page
    assert 'value="add-role"' not in page  # active: frozen


def test_an_unknown_action_is_not_found(client, policy_admin, draft):
    client.force_login(policy_admin)
    assert client.post(detail("2"), {"action": "explode"}).status_code == 404


@pytest.mark.parametrize("requirement", ["", "abc", "²", "999999"])
def test_a_requirement_that_is_not_there_is_not_found(client, policy_admin, draft, requirement):
    client.force_login(policy_admin)
    response = client.post(detail("2"), {"action": "remove-role", "requirement": requirement})
    assert response.status_code == 404


def test_the_policy_pages_obey_the_csp(client, policy_admin, draft):
    from tests.security.test_xss_csp import Markup

    client.force_login(policy_admin)
    for page_url in (LIST, detail("1"), detail("2")):
        markup = Markup(client.get(page_url).content.decode())
        assert markup.inline_scripts() == [] and markup.handlers() == [], page_url
        assert markup.style_attributes() == [], page_url
