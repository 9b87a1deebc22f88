"""The admin shows each user only what they may do (issue 11, item 16): the "Administration"
link only to those the admin offers something, and no Add, Change, Delete or action that the
services would refuse on save."""

import pytest
from django.contrib import admin
from django.test import RequestFactory

from audits.models import AuditEvent
from governance.models import Membership, Project
from governance.permissions import has_project_perm
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem, Comment, Evidence
from lifecycle.evaluations.models import DatasetVersion, EvaluationRun, ModelVersion
from lifecycle.gates.models import Gate, GateCriterion

pytestmark = pytest.mark.django_db

ADMIN_LINK = 'href="/admin/">Administration</a>'


def staff(user):
    user.is_staff = True
    user.save()
    return user


def test_it_links_to_the_admin_only_for_staff_it_offers_something(client, team):
    client.force_login(team[Role.PROJECT_LEAD])  # not staff
    assert ADMIN_LINK not in client.get("/").content.decode()
    client.force_login(staff(team.outsider))  # staff, but no role and no global permission
    assert ADMIN_LINK not in client.get("/account/").content.decode()
    index = client.get("/admin/").content.decode()
    assert "You don’t have permission to view or edit anything" in index


def test_the_auditor_sees_the_admin_read_only(client, team):
    client.force_login(staff(team[Role.AUDITOR]))
    assert ADMIN_LINK in client.get("/").content.decode()  # they may read records there
    index = client.get("/admin/").content.decode()
    assert "Projects" in index and "Audit events" in index
    assert "addlink" not in index  # no "+ Add" next to any model
    assert "changelink" not in index  # "View", never "Change"
    for changelist in (
        "governance/project",
        "governance/membership",
        "lifecycle/checklistitem",
        "lifecycle/evidence",
        "lifecycle/comment",
        "lifecycle/gate",
        "lifecycle/modelversion",
        "lifecycle/datasetversion",
        "lifecycle/evaluationrun",
        "lifecycle/gatecriterion",
        "audits/auditevent",
    ):
        response = client.get(f"/admin/{changelist}/")
        assert response.status_code == 200, changelist
        page = response.content.decode()
        assert f'href="/admin/{changelist}/add/"' not in page, f"an Add button on {changelist}"
        assert "addlink" not in page  # nor in the side navigation
        assert 'name="action"' not in page, f"actions offered on {changelist}"
    assert client.get("/admin/governance/membership/add/").status_code == 403
    assert client.get("/admin/lifecycle/evidence/add/").status_code == 403


def test_the_auditor_gets_a_view_page_without_save_or_delete(client, team):
    client.force_login(staff(team[Role.AUDITOR]))
    item = team.project.checklist_items.first()
    for url in (
        f"/admin/governance/project/{team.project.pk}/change/",
        f"/admin/lifecycle/checklistitem/{item.pk}/change/",
        f"/admin/governance/membership/{team.project.memberships.first().pk}/change/",
    ):
        page = client.get(url).content.decode()
        assert 'name="_save"' not in page, url
        assert "deletelink" not in page, url
        assert "Close" in page, url


def test_the_lead_still_gets_the_buttons_they_may_use(client, team):
    client.force_login(staff(team[Role.PROJECT_LEAD]))
    members = client.get("/admin/governance/membership/").content.decode()
    assert 'href="/admin/governance/membership/add/"' in members
    gates = client.get("/admin/lifecycle/gate/").content.decode()
    assert 'value="submit"' in gates  # gate_submit: the lead's permission
    assert 'value="start_review_cycle"' not in gates  # gate_start_review_cycle: the chair's
    assert client.get(f"/admin/governance/project/{team.project.pk}/change/").status_code == 200
    criteria = client.get("/admin/lifecycle/gatecriterion/").content.decode()
    # set_criteria is the chair's and the safety officer's
    assert 'href="/admin/lifecycle/gatecriterion/add/"' not in criteria


ADD_RULES = [
    (Membership, "manage_members"),
    (Evidence, "add_evidence"),
    (Comment, "comment"),
    (ModelVersion, "manage_versions"),
    (DatasetVersion, "manage_versions"),
    (EvaluationRun, "upload_evaluation"),
    (GateCriterion, "set_criteria"),
]


@pytest.mark.parametrize("role", list(Role))
def test_add_buttons_follow_the_service_rules_for_every_role(team, role):
    """For each role, every admin's Add (and Change for the list) answers what the service's
    permission check answers on the member's project."""
    user = staff(team[role])
    for model, codename in ADD_RULES:
        request = RequestFactory().get("/admin/")
        request.user = user
        model_admin = admin.site.get_model_admin(model)
        allowed = has_project_perm(user, codename, team.project)
        assert model_admin.has_add_permission(request) == allowed, (role, model.__name__)
    request = RequestFactory().get("/admin/")
    request.user = user
    assert admin.site.get_model_admin(ChecklistItem).has_change_permission(
        request
    ) == has_project_perm(user, "edit_checklist", team.project)
    assert admin.site.get_model_admin(Project).has_change_permission(request) == has_project_perm(
        user, "change_project", team.project
    )
    actions = admin.site.get_model_admin(Gate).get_actions(request)
    assert ("submit" in actions) == has_project_perm(user, "submit_gate", team.project)
    assert ("start_review_cycle" in actions) == has_project_perm(user, "start_review", team.project)
    audit_listed = admin.site.get_model_admin(AuditEvent).has_module_permission(request)
    assert audit_listed == has_project_perm(user, "view_audit", team.project)
