"""The default checklist template: Table 1's 44 considerations, loaded by a data migration."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ChecklistTemplate, TemplateItem
from lifecycle.checklists.selectors import active_template
from lifecycle.phases import Phase
from tests.factories import UserFactory, make_project

pytestmark = pytest.mark.django_db


def test_it_loads_table_1_with_7_7_11_9_10_items_per_phase():
    template = active_template()
    counts = {phase: template.items.filter(phase=phase).count() for phase in Phase}
    assert counts == {
        Phase.PLANNING: 7,
        Phase.DATA: 7,
        Phase.DEVELOPMENT: 11,
        Phase.DEPLOYMENT: 9,
        Phase.MONITORING: 10,
    }
    assert template.items.count() == 44


def test_every_item_is_complete_and_keyed_by_its_phase():
    for item in active_template().items.all():
        item.full_clean()  # key format, owner role choice, lengths
        assert item.key.startswith(f"{item.phase}.")
        assert item.title and len(item.guidance) > 60
        assert item.owner_role in Role.values
        assert item.owner_role not in {Role.COMMITTEE_MEMBER, Role.AUDITOR}


def test_a_project_keeps_its_template_version_when_a_new_one_is_activated(admin_user):
    project = make_project()
    v1 = project.checklist_template
    v2 = checklist_services.checklist_template_create_version(
        actor=admin_user, source=v1, version="2"
    )
    item = TemplateItem(
        template=v2,
        phase=Phase.DEPLOYMENT,
        key="deployment.downtime-drill",
        title="Rehearse the downtime procedure",
        guidance="A dated record of a downtime drill in which staff fell back to the manual "
        "workflow while the model was switched off.",
        owner_role=Role.CLINICAL_SAFETY_OFFICER,
        position=999,
    )
    checklist_services.template_item_save(actor=admin_user, item=item)
    checklist_services.checklist_template_activate(actor=admin_user, template=v2)

    project.refresh_from_db()
    assert project.checklist_template == v1
    assert project.checklist_items.count() == 44
    newer = make_project()
    assert newer.checklist_template == v2
    assert newer.checklist_items.count() == 45
    assert newer.checklist_items.filter(key="deployment.downtime-drill").exists()
    assert ChecklistTemplate.objects.filter(is_active=True).get() == v2


def test_a_template_in_use_cannot_change(admin_user):
    template = make_project().checklist_template
    item = template.items.first()
    item.title = "Something else"
    with pytest.raises(ValidationError, match="create a new version"):
        checklist_services.template_item_save(actor=admin_user, item=item)
    with pytest.raises(ValidationError, match="create a new version"):
        checklist_services.template_item_delete(actor=admin_user, item=item)
    assert template.items.get(pk=item.pk).title != "Something else"


def test_a_template_missing_a_phase_cannot_be_activated(admin_user):
    v1 = active_template()
    v2 = checklist_services.checklist_template_create_version(
        actor=admin_user, source=v1, version="2"
    )
    v2.items.filter(phase=Phase.MONITORING).delete()
    with pytest.raises(ValidationError, match="Monitoring and maintenance"):
        checklist_services.checklist_template_activate(actor=admin_user, template=v2)
    assert active_template() == v1


def test_only_template_administrators_manage_templates():
    someone = UserFactory(is_staff=True)
    with pytest.raises(PermissionDenied):
        checklist_services.checklist_template_create_version(
            actor=someone, source=active_template(), version="2"
        )
    with pytest.raises(PermissionDenied):
        checklist_services.checklist_template_activate(actor=someone, template=active_template())
    assert ChecklistTemplate.objects.count() == 1


def test_a_duplicate_version_label_is_refused(admin_user):
    with pytest.raises(ValidationError, match="version"):
        checklist_services.checklist_template_create_version(
            actor=admin_user, source=active_template(), version="1"
        )
