"""The Django admin: restricted to visible projects, writes through the services."""

import pytest

from governance.models import Project
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem
from lifecycle.gates.models import Gate
from lifecycle.phases import Phase
from tests.factories import make_team, project_creator

pytestmark = pytest.mark.django_db


def staff(user):
    user.is_staff = True
    user.save()
    return user


def test_an_outsider_does_not_see_the_project_in_the_admin(client):
    team = make_team()
    client.force_login(staff(team.outsider))
    listing = client.get("/admin/governance/project/").content.decode()
    assert team.project.name not in listing
    response = client.get(f"/admin/governance/project/{team.project.pk}/change/")
    assert response.status_code == 302  # "does not exist" redirect, like any missing object
    items = client.get("/admin/lifecycle/checklistitem/").content.decode()
    assert team.project.name not in items


@pytest.mark.parametrize(
    "changelist",
    [
        "governance/project",
        "governance/membership",
        "lifecycle/checklistitem",
        "lifecycle/evidence",
        "lifecycle/comment",
        "lifecycle/gate",
        "lifecycle/modelversion",
        "lifecycle/datasetversion",
        "audits/auditevent",
    ],
)
def test_no_admin_list_or_filter_names_a_project_the_user_cannot_see(client, changelist):
    hidden, mine = make_team(), make_team()
    client.force_login(staff(mine[Role.PROJECT_LEAD]))
    page = client.get(f"/admin/{changelist}/").content.decode()
    assert hidden.project.name not in page and hidden.project.slug not in page


def test_a_member_sees_their_project_in_the_admin(client, team):
    client.force_login(staff(team[Role.AUDITOR]))
    assert team.project.name in client.get("/admin/governance/project/").content.decode()


def test_adding_a_project_in_the_admin_runs_the_service(client):
    creator = staff(project_creator())
    client.force_login(creator)
    response = client.post(
        "/admin/governance/project/add/",
        {
            "name": "Radiology report summariser",
            "slug": "radiology-summariser",
            "clinical_setting": "Radiology",
            "intended_use": "Summarise reports for referring clinicians.",
            "intended_users": "Referring physicians",
            "task_category": "clinical_documentation",
            "risk_tier": "medium",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "gates-TOTAL_FORMS": "0",
            "gates-INITIAL_FORMS": "0",
            "model_versions-TOTAL_FORMS": "0",
            "model_versions-INITIAL_FORMS": "0",
            "dataset_versions-TOTAL_FORMS": "0",
            "dataset_versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(slug="radiology-summariser")
    assert project.checklist_items.count() == 44
    assert project.gates.get(phase=Phase.PLANNING).state == Gate.State.OPEN
    assert project.memberships.get().role == Role.PROJECT_LEAD


def test_an_item_form_shows_the_service_error_next_to_the_field(client, team):
    client.force_login(staff(team.creator))
    item = team.project.checklist_items.filter(phase=Phase.PLANNING).first()
    response = client.post(
        f"/admin/lifecycle/checklistitem/{item.pk}/change/",
        {
            "status": "not_applicable",
            "justification": "",
            "assignee": "",
            "evidence-TOTAL_FORMS": "0",
            "evidence-INITIAL_FORMS": "0",
            "comments-TOTAL_FORMS": "0",
            "comments-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "justification is required" in errors["justification"][0]
    assert ChecklistItem.objects.get(pk=item.pk).status == "not_started"


def test_gate_actions_call_the_services_and_report_refusals(client, team):
    client.force_login(staff(team.creator))
    planning = team.project.gates.get(phase=Phase.PLANNING)
    response = client.post(
        "/admin/lifecycle/gate/",
        {"action": "submit", "_selected_action": [planning.pk]},
        follow=True,
    )
    messages = [str(m) for m in response.context["messages"]]
    assert any("required item(s) are neither done nor justified" in m for m in messages)
    assert Gate.objects.get(pk=planning.pk).state == "open"
