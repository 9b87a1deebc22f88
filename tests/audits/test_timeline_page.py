"""The project audit timeline page: filters, and the chain's verification status."""

from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audits import checkpoints, verification
from audits.models import AuditChain
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from tests.audits import tamper
from tests.factories import make_team

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


# --- Cost that does not grow with the chain -------------------------------------------------


def add_events(team, count: int) -> None:
    item = team.project.checklist_items.first()
    for n in range(count):
        checklist_services.comment_add(
            actor=team[Role.COMMITTEE_MEMBER], item=item, body=f"Comment {n}."
        )


def queries_of_a_view(client, team, **params) -> int:
    cache.clear()  # a cold view: the whole chain is walked when there is no checkpoint
    with CaptureQueriesContext(connection) as queries:
        assert client.get(timeline(team), params).status_code == 200
    return len(queries)


def test_a_view_costs_the_same_queries_whatever_the_chain_length(client, team):
    client.force_login(team[Role.AUDITOR])
    client.get(timeline(team))  # the first request of a session also saves the session
    short = queries_of_a_view(client, team)
    add_events(team, 120)
    assert queries_of_a_view(client, team) == short
    assert queries_of_a_view(client, team, page=3) == short
    make_team()  # another project, with its own chain, changes nothing either
    assert queries_of_a_view(client, team) == short


def test_pages_of_the_whole_chain_are_ranges_of_sequence_numbers(client, team):
    add_events(team, 60)
    length = AuditChain.objects.get(project=team.project).length
    client.force_login(team[Role.AUDITOR])
    first = client.get(timeline(team)).context["page"]
    assert [e.sequence for e in first.object_list] == list(range(length, length - 50, -1))
    last = client.get(timeline(team), {"page": 2}).context["page"]
    assert [e.sequence for e in last.object_list] == list(range(length - 50, 0, -1))
    page = client.get(timeline(team), {"page": 99}).content.decode()
    assert "Page 2 of 2" in page and f"{length} events, newest first" in page


def read_checkpoint_files(monkeypatch, settings) -> list[Path]:
    """Record every checkpoint file opened from now on."""
    opened: list[Path] = []
    original = Path.open

    def spy(self, *args, **kwargs):
        if Path(settings.AUDIT_CHECKPOINT_DIR) in self.parents:
            opened.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    return opened


def test_a_view_reads_only_its_own_chain_s_checkpoint_file(client, team, monkeypatch, settings):
    make_team()
    assert verification.write_checkpoints().checkpointed >= 3  # two projects and the global
    chain = AuditChain.objects.get(project=team.project)
    client.force_login(team[Role.AUDITOR])
    opened = read_checkpoint_files(monkeypatch, settings)
    page = client.get(timeline(team)).content.decode()
    assert opened == [checkpoints.path_for(chain.key)]
    assert "signed checkpoint of" in page and f"({chain.length} events)" in page


def test_the_view_recomputes_only_what_was_added_since_the_last_verified_point(client, team):
    verification.write_checkpoints()
    add_events(team, 2)
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team)).content.decode()
    assert "✓ verified" in page and "the 2 events since the last verified point were" in page
    page = client.get(timeline(team)).content.decode()  # the head has not moved
    assert "✓ verified" in page and "no event was added since the last verified point" in page
    add_events(team, 1)
    page = client.get(timeline(team)).content.decode()
    assert "the 1 event since the last verified point was recomputed" in page


def test_tampering_after_the_last_checkpoint_is_shown(client, team):
    verification.write_checkpoints()
    add_events(team, 3)
    client.force_login(team[Role.AUDITOR])
    assert "✓ verified" in client.get(timeline(team)).content.decode()
    chain = AuditChain.objects.get(project=team.project)
    tamper.strip_protections()
    tamper.edit_and_reseal(chain, chain.length - 1)
    cache.clear()  # as in another web process, which has not seen the chain before
    page = client.get(timeline(team)).content.decode()
    assert "TAMPERING DETECTED" in page and f"event #{chain.length}" in page


def test_a_rewritten_chain_no_longer_matches_its_signed_checkpoint(client, team):
    verification.write_checkpoints()
    chain = AuditChain.objects.get(project=team.project)
    tamper.strip_protections()
    tamper.rewrite_from(chain, 2)  # every hash from event 2 on recomputed, the head updated
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team)).content.decode()
    assert "TAMPERING DETECTED" in page and "differs from the checkpoint of" in page


def test_a_cached_head_is_not_trusted_once_its_event_changed(client, team):
    add_events(team, 2)
    client.force_login(team[Role.AUDITOR])
    assert "✓ verified" in client.get(timeline(team)).content.decode()
    chain = AuditChain.objects.get(project=team.project)
    tamper.strip_protections()
    tamper.rewrite_from(chain, chain.length)  # the verified head's own hash changes
    page = client.get(timeline(team)).content.decode()
    assert "TAMPERING DETECTED" in page and "does not pass through that point" in page


def test_a_recorded_checkpoint_missing_from_its_file_is_shown(client, team):
    verification.write_checkpoints()
    chain = AuditChain.objects.get(project=team.project)
    checkpoints.path_for(chain.key).unlink()
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team)).content.decode()
    assert "TAMPERING DETECTED" in page and "was deleted" in page


def test_an_altered_last_checkpoint_line_is_shown(client, team):
    verification.write_checkpoints()
    chain = AuditChain.objects.get(project=team.project)
    path = checkpoints.path_for(chain.key)
    path.write_text(path.read_text().replace('"length": ', '"length": 1'))
    client.force_login(team[Role.AUDITOR])
    page = client.get(timeline(team)).content.decode()
    assert "TAMPERING DETECTED" in page and "invalid signature" in page
