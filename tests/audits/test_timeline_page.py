"""The project audit timeline page: filters, and the chain's verification status."""

import pytest
from django.urls import reverse

from audits.models import AuditChain
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from tests.audits import tamper

pytestmark = pytest.mark.django_db


def timeline(team):
    return reverse("audit-timeline", args=[team.project.slug])


def test_the_timeline_shows_events_and_a_verified_chain(client, team):
    item = team.project.checklist_items.first()
    checklist_services.comment_add(actor=team[Role.COMMITTEE_MEMBER], item=item, body="Reviewed.")
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team)).content.decode()
    length = AuditChain.objects.get(project=team.project).length
    assert "✓ verified" in page and f"All {length} events" in page
    assert f"{length} events, newest first" in page
    assert team[Role.COMMITTEE_MEMBER].get_full_name() in page


def test_filters_narrow_the_events(client, team):
    item = team.project.checklist_items.first()
    member = team[Role.COMMITTEE_MEMBER]
    checklist_services.comment_add(actor=member, item=item, body="One.")
    checklist_services.comment_add(actor=member, item=item, body="Two.")
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team), {"actor": member.pk}).content.decode()
    assert "2 events, newest first" in page
    page = client.get(timeline(team), {"action": "comment.add", "since": "2999-01-01T00:00"})
    assert "0 events, newest first" in page.content.decode()


def test_a_bad_filter_value_is_shown_next_to_its_field(client, team):
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team), {"since": "yesterday-ish"}).content.decode()
    assert "Enter a valid date/time." in page


def test_tampering_is_shown_on_the_page(client, team):
    item = team.project.checklist_items.first()
    checklist_services.comment_add(actor=team[Role.COMMITTEE_MEMBER], item=item, body="Reviewed.")
    chain = AuditChain.objects.get(project=team.project)
    tamper.strip_protections()
    tamper.edit_payload(chain, 2)
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team)).content.decode()
    assert "TAMPERING DETECTED" in page and 'role="alert"' in page
    assert "✓ verified" not in page


def test_roles_without_the_audit_permission_are_refused(client, team):
    # A committee member sees the project but not its audit trail; an outsider not even that.
    client.force_login(team[Role.COMMITTEE_MEMBER])
    assert client.get(timeline(team)).status_code == 403
    overview = client.get(team.project.get_absolute_url()).content.decode()
    assert timeline(team) not in overview  # no link to a page they may not open
    client.force_login(team.outsider)
    assert client.get(timeline(team)).status_code == 404
