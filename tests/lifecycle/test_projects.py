"""Registering a project: its checklist, its gates, and what bad input does."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from governance.models import Membership, Project
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem
from lifecycle.gates.models import Gate
from lifecycle.phases import Phase
from lifecycle.projects import services as project_services
from tests.factories import UserFactory, make_project, project_creator

pytestmark = pytest.mark.django_db


def test_it_creates_44_items_and_5_gates_with_only_planning_open():
    project = make_project()
    assert project.checklist_items.count() == 44
    gates = list(project.gates.order_by("position"))
    assert [g.phase for g in gates] == [p.value for p in Phase]
    assert [g.state for g in gates] == ["open", "locked", "locked", "locked", "locked"]
    assert project.current_phase == Phase.PLANNING
    for gate in gates:
        expected = project.checklist_template.items.filter(phase=gate.phase).count()
        assert gate.items.count() == expected
    assert set(project.checklist_items.values_list("status", flat=True)) == {"not_started"}


def test_the_creator_becomes_owner_and_project_lead():
    creator = project_creator()
    project = make_project(creator)
    assert project.owner == creator
    assert list(Membership.objects.filter(project=project).values_list("user", "role")) == [
        (creator.pk, Role.PROJECT_LEAD)
    ]
    assert creator.has_perm("governance.manage_members", project)


def test_it_needs_the_global_permission_to_register_projects():
    with pytest.raises(PermissionDenied):
        make_project(UserFactory())
    assert not Project.objects.exists()


def test_a_duplicate_slug_is_refused_with_nothing_stored():
    make_project(slug="ed-triage")
    before = (Project.objects.count(), ChecklistItem.objects.count(), Gate.objects.count())
    with pytest.raises(ValidationError) as caught:
        make_project(slug="ed-triage")
    assert "slug" in caught.value.message_dict
    assert "already exists" in caught.value.message_dict["slug"][0]
    assert (Project.objects.count(), ChecklistItem.objects.count(), Gate.objects.count()) == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slug", "Not A Slug!", "lower-case letters"),
        ("task_category", "astrology", "not a valid choice"),
        ("risk_tier", "extreme", "not a valid choice"),
        ("name", "", "cannot be blank"),
    ],
)
def test_bad_fields_are_named_in_the_error(field, value, message):
    with pytest.raises(ValidationError) as caught:
        make_project(**{field: value})
    assert field in caught.value.message_dict
    assert message in " ".join(caught.value.message_dict[field])
    assert not Project.objects.exists()


def test_the_project_lead_edits_descriptive_fields_but_not_the_slug(team):
    project = project_services.project_update(
        actor=team.creator, project=team.project, risk_tier="high", name="Renamed"
    )
    assert (project.risk_tier, project.name) == ("high", "Renamed")
    with pytest.raises(ValidationError, match="cannot be changed"):
        project_services.project_update(actor=team.creator, project=team.project, slug="other")
    with pytest.raises(PermissionDenied):
        project_services.project_update(
            actor=team[Role.CLINICAL_LEAD], project=team.project, name="Hijacked"
        )
    assert Project.objects.get(pk=team.project.pk).name == "Renamed"
