"""An event's before/after as a readable field-by-field diff on the audit timeline."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from audits.diff import changes, shorten
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.gates import services as gate_services
from tests.factories import settle

# --- audits.diff: the rows, without a page ------------------------------------------------------


def rows(before, after):
    return [(r.field, r.before, r.after) for r in changes(before, after).rows]


def test_it_shows_only_the_fields_that_changed():
    diff = changes(
        {"state": "open", "review_round": 0, "cycle": 1},
        {"state": "in_review", "review_round": 1, "cycle": 1},
    )
    assert [(r.field, r.before, r.after) for r in diff.rows] == [
        ("state", "open", "in_review"),
        ("review round", "0", "1"),
    ]
    assert diff.unchanged == 1 and diff.both_sides


def test_nested_dictionaries_become_paths():
    before = {"criteria": {"ci_low(recall) >= 0.9": "fail", "wer <= 0.1": "pass"}}
    after = {"criteria": {"ci_low(recall) >= 0.9": "pass", "wer <= 0.1": "pass"}, "n_records": 3}
    assert rows(before, after) == [
        ("criteria › ci_low(recall) >= 0.9", "fail", "pass"),
        ("n records", None, "3"),
    ]


def test_lists_of_plain_values_are_one_value_and_lists_of_objects_one_row_each():
    after = {
        "metrics": ["recall", "precision"],
        "results": [{"metric": "recall", "value": 0.91}, {"metric": "auroc", "value": None}],
        "groups": [],
    }
    assert rows(None, after) == [
        ("metrics", None, "recall, precision"),
        ("results #1 › metric", None, "recall"),
        ("results #1 › value", None, "0.91"),
        ("results #2 › metric", None, "auroc"),
        ("results #2 › value", None, "(none)"),
        ("groups", None, "(empty list)"),
    ]
    assert rows({"metrics": ["recall"]}, {"metrics": ["recall", "auroc"]}) == [
        ("metrics", "recall", "recall, auroc")
    ]


def test_removed_fields_and_changes_of_type_are_rows():
    assert rows({"assignee": 3, "note": "x"}, {"assignee": None}) == [
        ("assignee", "3", "(none)"),
        ("note", "x", None),
    ]
    assert rows({"required": 1}, {"required": True}) == [("required", "1", "yes")]
    assert [r.kind for r in changes({"a": 1, "b": 1}, {"a": 2, "c": 1}).rows] == [
        "changed",
        "added",
        "removed",
    ]


def test_values_that_are_not_dictionaries_and_empty_sides():
    assert rows("draft", "final") == [("value", "draft", "final")]
    assert changes(None, {}).rows == [] and changes({}, {}).unchanged == 0
    empty = changes({"note": ""}, {"note": "  "})
    assert [(r.before, r.after) for r in empty.rows] == [("(empty)", "(empty)")]


def test_long_text_is_shortened_at_a_word_boundary():
    text = "Reviewed at the governance committee meeting of the first of December"
    short = shorten(text, 40)
    assert short == "Reviewed at the governance committee…"
    assert len(short) <= 40 and text.startswith(short[:-1])
    assert shorten("a" * 64, 20) == "a" * 19 + "…"  # one long word (a hash): cut inside it
    assert shorten(text, len(text)) == text


# --- On the timeline page -----------------------------------------------------------------------


def timeline_of(client, team, **params):
    client.force_login(team[Role.AUDITOR])
    url = reverse("audit-timeline", args=[team.project.slug])
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_a_change_is_a_table_of_field_before_after(client, team):
    item = team.project.checklist_items.first()
    checklist_services.checklist_item_update(actor=team.creator, item=item, status="in_progress")
    page = timeline_of(client, team, action="checklist_item.update")
    assert '<table class="diff">' in page
    assert '<th scope="col">Before</th><th scope="col">After</th>' in page
    assert '<th scope="row">status</th>' in page
    assert "<del>not_started</del>" in page and "<ins>in_progress</ins>" in page
    assert "{&#x27;status&#x27;" not in page and "{'status'" not in page  # no Python dict


@pytest.mark.django_db
def test_unchanged_fields_are_hidden_and_counted(client, team):
    settle(team, "planning")
    gate = team.project.gates.get(phase="planning")
    gate_services.gate_submit(actor=team.creator, gate=gate)
    page = timeline_of(client, team, action="gate.submit")
    assert '<th scope="row">state</th>' in page
    assert '<th scope="row">cycle</th>' not in page  # 1 before and after
    assert "unchanged field" in page and "not shown" in page


@pytest.mark.django_db
def test_markup_in_recorded_values_is_shown_as_text(client, team):
    item = team.project.checklist_items.first()
    body = '<script>alert("x")</script><b onmouseover="steal()">bold</b>'
    checklist_services.comment_add(actor=team[Role.COMMITTEE_MEMBER], item=item, body=body)
    page = timeline_of(client, team, action="comment.add")
    assert body not in page and "<b onmouseover" not in page
    assert escape(body) in page


@pytest.mark.django_db
def test_a_long_value_is_cut_at_a_word_with_the_whole_text_one_click_away(client, team):
    item = team.project.checklist_items.first()
    body = " ".join(["The validation cohort excluded paediatric admissions"] * 8) + " END."
    checklist_services.comment_add(actor=team[Role.COMMITTEE_MEMBER], item=item, body=body)
    page = timeline_of(client, team, action="comment.add")
    assert '<details class="long-text">' in page
    assert body in page  # the whole of it, inside the <details>
    preview = page.split('<span class="when-closed">')[1].split(" <span")[0]
    assert preview.endswith("…") and body.startswith(preview[:-1])
    assert preview[:-1].split()[-1] in body.split()  # ends on a whole word


@pytest.mark.django_db
def test_the_query_count_does_not_grow_with_the_events_shown(client, team):
    item = team.project.checklist_items.first()
    client.force_login(team[Role.AUDITOR])
    url = reverse("audit-timeline", args=[team.project.slug])
    counts = []
    for n in (1, 20):
        for i in range(n):
            checklist_services.comment_add(actor=team.creator, item=item, body=f"Note {i}.")
        client.get(url)  # a first view renews the idle session
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
