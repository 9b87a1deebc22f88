"""The phase page as its users see it: inline checklist edits over htmx, errors next to the
field, controls shown only to those who may use them (and refused by the server anyway), the
evaluation upload, and the gate panel."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem, Evidence
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.phases import Phase
from tests.factories import make_versions

pytestmark = pytest.mark.django_db

KEY = "planning.data-privacy-plan"
HTMX = {"HTTP_HX_REQUEST": "true"}
RECORDS = binary_classifier(seed=1, n=200, prevalence=0.3, separation=1.5)


def url(name, team, *args):
    return reverse(name, args=[team.project.slug, *args])


def item(team) -> ChecklistItem:
    return team.project.checklist_items.get(key=KEY)


def test_not_applicable_without_a_justification_is_refused_next_to_the_field(client, team):
    client.force_login(team.creator)
    response = client.post(url("item-status", team, KEY), {"status": "not_applicable"}, **HTMX)
    assert response.status_code == 400
    page = response.content.decode()
    # The card comes back with the error under the justification field, the choice kept.
    assert f'id="item-{KEY}"' in page
    justification = page.index(f'id="justification-{KEY}"')
    assert page.index('class="errorlist"', justification) < page.index("Save status")
    assert '<option value="not_applicable" selected>' in page
    assert item(team).status == "not_started"


def test_a_justified_not_applicable_is_saved_and_shown_in_the_card(client, team):
    client.force_login(team.creator)
    response = client.post(
        url("item-status", team, KEY),
        {"status": "not_applicable", "justification": "No patient data is processed."},
        **HTMX,
    )
    assert response.status_code == 200
    assert "Not applicable because:" in response.content.decode()
    assert "No patient data is processed." in response.content.decode()
    assert item(team).status == "not_applicable"


def test_a_plain_post_redirects_back_to_the_item_with_the_errors_as_messages(client, team):
    client.force_login(team.creator)
    response = client.post(url("item-status", team, KEY), {"status": "not_applicable"})
    assert response.status_code == 302
    assert response["Location"].endswith(f"#item-{KEY}")
    page = client.get(response["Location"]).content.decode()
    assert "justification" in page.lower()


def test_evidence_of_every_kind_is_attached_inline(client, team):
    client.force_login(team.creator)
    target = url("item-evidence", team, KEY)
    upload = SimpleUploadedFile("dpia.pdf", b"%PDF-1.4 dpia")
    for data in (
        {"kind": "file", "title": "DPIA", "file": upload},
        {"kind": "link", "url": "https://wiki.example/dpia"},
        {"kind": "note", "note": "Signed by the DPO."},
    ):
        last = client.post(target, data, **HTMX)
        assert last.status_code == 200, last.content.decode()
    page = last.content.decode()
    assert "DPIA" in page and "https://wiki.example/dpia" in page and "Signed by the DPO." in page
    assert sorted(item(team).evidence.values_list("kind", flat=True)) == ["file", "link", "note"]
    file = item(team).evidence.get(kind=Evidence.Kind.FILE)
    assert reverse("evidence-download", args=[file.pk]) in page


def test_a_link_that_is_not_a_url_is_refused_under_the_link_field(client, team):
    client.force_login(team.creator)
    response = client.post(
        url("item-evidence", team, KEY), {"kind": "link", "url": "not a url"}, **HTMX
    )
    assert response.status_code == 400
    page = response.content.decode()
    field = page.index(f'id="ev-url-{KEY}"')
    assert page.index('class="errorlist"', field) < page.index(f'id="ev-note-{KEY}"')
    assert not item(team).evidence.exists()


def test_a_comment_appears_in_the_discussion(client, team):
    client.force_login(team[Role.COMMITTEE_MEMBER])
    response = client.post(url("item-comment", team, KEY), {"body": "Which DPIA template?"}, **HTMX)
    assert response.status_code == 200
    assert "Discussion (1)" in response.content.decode()
    assert "Which DPIA template?" in response.content.decode()
    # The posted text is in the discussion, not left in the box to be posted twice.
    box = re.search(
        r"<textarea[^>]*name=\"body\"[^>]*>(.*?)</textarea>", response.content.decode(), re.S
    )
    assert box is not None and box.group(1).strip() == ""


def test_an_empty_comment_is_refused_next_to_the_box(client, team):
    client.force_login(team[Role.COMMITTEE_MEMBER])
    response = client.post(url("item-comment", team, KEY), {"body": ""}, **HTMX)
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_an_auditor_sees_no_edit_controls_and_the_server_refuses_them_anyway(client, team):
    client.force_login(team[Role.AUDITOR])
    page = client.get(url("phase", team, Phase.PLANNING)).content.decode()
    assert item(team).title in page
    for control in ("Save status", "Attach evidence", "Add a comment", "Upload and evaluate"):
        assert control not in page
    response = client.post(
        url("item-status", team, KEY), {"status": "done", "justification": ""}, **HTMX
    )
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert item(team).status == "not_started"


def test_a_refused_records_file_names_its_line_and_field_on_the_page(client, team):
    client.force_login(team.creator)
    model, dataset = make_versions(team, rows=200)
    records = b'{"id": "a", "label": 1, "score": 0.9}\n{"id": "b", "label": 0, "score": 7}\n'
    response = client.post(
        url("evaluation-upload", team, Phase.PLANNING),
        {
            "file": SimpleUploadedFile("records.jsonl", records),
            "model_version": model.pk,
            "dataset_version": dataset.pk,
            "metrics": "auroc",
            "resamples": 100,
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "line 2" in page and "score" in page
    assert not EvaluationRun.objects.exists()


def test_an_accepted_upload_opens_the_run_page(
    client, team, in_process_tasks, django_capture_on_commit_callbacks
):
    client.force_login(team.creator)
    model, dataset = make_versions(team, rows=200)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url("evaluation-upload", team, Phase.PLANNING),
            {
                "file": SimpleUploadedFile("records.jsonl", RECORDS),
                "model_version": model.pk,
                "dataset_version": dataset.pk,
                "metrics": "auroc,ece",
                "resamples": 100,
            },
        )
    run = EvaluationRun.objects.get()
    assert response["Location"] == url("run", team, run.pk)
    page = client.get(response["Location"]).content.decode()
    assert "Succeeded" in page
    assert "auroc" in page and "ROC curve (AUROC 0." in page and "Calibration (ECE 0." in page


def test_the_gate_panel_lists_each_missing_condition(client, team):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    page = client.get(url("phase", team, Phase.PLANNING)).content.decode()
    assert 'id="gate"' in page
    # Required items not yet settled are listed as missing, by title, not by colour alone.
    assert item(team).title in page[page.index('id="gate"') :]
    assert "missing" in page[page.index('id="gate"') :].lower()
