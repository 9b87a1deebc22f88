"""Hostile evaluation files (issue 11, items 3, 4 and 13).

A record nested thousands of levels deep, a number of thousands of digits and text a database
cannot hold (a NUL, an unpaired surrogate) are refused like every other bad file, at every entry
point: line, field and reason, nothing stored. And the file is read before the gate is locked,
so a large upload does not hold the database's write lock (on SQLite, the whole database's).
"""

import html
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse

from audits.models import AuditEvent
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates.models import Gate
from lifecycle.metrics import RecordError, parse_records
from lifecycle.metrics.records import MAX_DEPTH, MAX_NUMBER_DIGITS
from lifecycle.phases import Phase
from tests.api.helpers import client_for
from tests.factories import make_versions

GOOD = b'{"id": "a", "label": 1, "score": 0.9, "groups": {"sex": "F"}}\n'
GOOD_CSV = b"id,label,score,group.sex,output\na,1,0.9,F,fine\n"
DEEP = 10_000
DIGITS = "9" * 5_001
NESTED = f"nested deeper than {MAX_DEPTH} levels"
LONG = f"an integer with more than {MAX_NUMBER_DIGITS} digits"
NUL = "contains a NUL character"


def _jsonl(second: str) -> bytes:
    return GOOD + second.encode() + b"\n"


def _csv(header: bytes, second: bytes) -> bytes:
    return header + b"\n" + second + b"\n"


# name -> (file name, contents, line, field, reason). Each file's first record is good.
HOSTILE = {
    "deep list in a class field": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": ' + "[" * DEEP + "]" * DEEP + ', "score": 0.1}'),
        2,
        "label",
        NESTED,
    ),
    "deep objects in a group attribute": (
        "r.jsonl",
        _jsonl(
            '{"id": "b", "label": 0, "score": 0.1, "groups": {"sex": '
            + '{"a": ' * DEEP
            + "1"
            + "}" * DEEP
            + "}}"
        ),
        2,
        "groups.sex",
        NESTED,
    ),
    "deep nesting in an ignored field": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": 0.1, "extra": ' + "[" * DEEP + "]" * DEEP + "}"),
        2,
        "extra",
        NESTED,
    ),
    "5,001-digit integer": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": ' + DIGITS + "}"),
        2,
        "score",
        LONG,
    ),
    "5,001-digit integer in an ignored field": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": 0.1, "extra": ' + DIGITS + "}"),
        2,
        "extra",
        LONG,
    ),
    "400-digit integer, too large for a float": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": ' + "9" * 400 + "}"),
        2,
        "score",
        LONG,
    ),
    "an absurd float": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": 1e999}'),
        2,
        "score",
        "Infinity is not allowed",
    ),
    "escaped NUL in a group value": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": 0.1, "groups": {"sex": "M\\u0000"}}'),
        2,
        "groups.sex",
        NUL,
    ),
    "escaped NUL in a text field": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": 0.1, "output": "no\\u0000te"}'),
        2,
        "output",
        NUL,
    ),
    "unpaired surrogate in a group value": (
        "r.jsonl",
        _jsonl('{"id": "b", "label": 0, "score": 0.1, "groups": {"sex": "\\ud800"}}'),
        2,
        "groups.sex",
        "contains an unpaired surrogate",
    ),
    "raw NUL in a CSV group column": (
        "r.csv",
        GOOD_CSV + b"b,0,0.1,M\x00,fine\n",
        3,
        "groups.sex",
        NUL,
    ),
    "raw NUL in a CSV text column": (
        "r.csv",
        GOOD_CSV + b"b,0,0.1,M,no\x00te\n",
        3,
        "output",
        NUL,
    ),
    "deep list in a CSV class cell": (
        "r.csv",
        GOOD_CSV + b'b,"' + b"[" * DEEP + b"]" * DEEP + b'",0.1,M,fine\n',
        3,
        "label",
        NESTED,
    ),
    "5,001-digit integer in a CSV class cell": (
        "r.csv",
        GOOD_CSV + b"b," + DIGITS.encode() + b",0.1,M,fine\n",
        3,
        "label",
        LONG,
    ),
}
CASES = pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))


def _sentence(line: int, field: str, reason: str) -> str:
    return f'line {line}, field "{field}": {reason}'


def _media_files() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def _stored_nothing(events_before: int) -> None:
    assert not EvaluationRun.objects.exists()
    assert _media_files() == []
    assert AuditEvent.objects.count() == events_before
    assert not AuditEvent.objects.filter(action="evaluation_run.start").exists()


def _api_upload(client, team, name: str, data: bytes, **headers):
    return client.post(
        f"/api/v1/projects/{team.project.slug}/evaluation-runs/",
        {
            "file": SimpleUploadedFile(name, data),
            "gate": "planning",
            "model_version": "v1",
            "dataset_version": "d1",
            "metrics": "auroc",
            "resamples": "100",
        },
        format="multipart",
        **headers,
    )


def _page_upload(client, team, name: str, data: bytes):
    model, dataset = team.project.model_versions.get(), team.project.dataset_versions.get()
    return client.post(
        reverse("evaluation-upload", args=[team.project.slug, Phase.PLANNING]),
        {
            "file": SimpleUploadedFile(name, data),
            "model_version": model.pk,
            "dataset_version": dataset.pk,
            "metrics": "auroc",
            "resamples": 100,
        },
    )


# --- Every entry point refuses them: line, field, reason, nothing stored ------------------------


@CASES
@pytest.mark.django_db
def test_it_refuses_a_hostile_file_over_the_api_with_line_and_field(team, case):
    name, data, line, field, reason = HOSTILE[case]
    make_versions(team, rows=2)  # the accepted files hold two records
    client = client_for(team[Role.DATA_STEWARD])
    before = AuditEvent.objects.count()
    response = _api_upload(client, team, name, data)
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert (error["code"], error["line"], error["field"]) == ("invalid_records", line, field)
    assert _sentence(line, field, reason) in error["message"]
    _stored_nothing(before)


@CASES
@pytest.mark.django_db
def test_it_shows_the_refusal_under_the_file_input_of_the_upload_form(client, team, case):
    name, data, line, field, reason = HOSTILE[case]
    make_versions(team, rows=2)  # the accepted files hold two records
    client.force_login(team[Role.DATA_STEWARD])
    before = AuditEvent.objects.count()
    response = _page_upload(client, team, name, data)
    assert response.status_code == 400
    page = response.content.decode()
    errors = page[page.index('id="id_file_error"') :]
    errors = html.unescape(errors[: errors.index("</ul>")])
    assert _sentence(line, field, reason) in errors
    _stored_nothing(before)


@CASES
def test_the_command_line_refuses_it_with_exit_status_2(tmp_path, case):
    name, data, line, field, reason = HOSTILE[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CommandError) as caught:
        call_command("evaluate", str(path), "--metrics", "auroc", stdout=io.StringIO())
    assert caught.value.returncode == 2
    assert str(caught.value).startswith(f"{name}: refused: {_sentence(line, field, reason)}")


def test_the_command_line_prints_the_refusal_without_a_traceback(tmp_path):
    _, data, _, _, _ = HOSTILE["deep list in a class field"]
    path = tmp_path / "deep.jsonl"
    path.write_bytes(data)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x"}
    env.setdefault("DEBUG", "1")
    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate", str(path), "--metrics", "auroc"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f'line 2, field "label": {NESTED}' in done.stderr


@pytest.mark.django_db
def test_a_nul_never_reaches_the_database_even_when_the_upload_skipped_the_check(team):
    # The job reads the file again: a NUL there fails the run naming the line (on PostgreSQL it
    # used to fail writing the results, with no line), the same on both databases.
    make_versions(team, rows=2)  # the accepted files hold two records
    _, data, _, _, _ = HOSTILE["escaped NUL in a group value"]
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=Phase.PLANNING),
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=ContentFile(data, name="r.jsonl"),
        metrics=["auroc"],
        resamples=50,
        check_records=False,
    )
    assert run_evaluation.apply(args=[run.pk]).get() == "failed: refused file"
    run.refresh_from_db()
    assert run.status == "failed" and not run.results.exists()
    assert _sentence(2, "groups.sex", NUL) in run.error_message


@pytest.mark.django_db
def test_a_refusal_quoting_a_percent_sign_answers_400_not_500(team):
    make_versions(team, rows=2)  # the accepted files hold two records
    client = client_for(team[Role.DATA_STEWARD])
    response = _api_upload(
        client, team, "r.jsonl", _jsonl('{"id": "b", "label": 0, "score": "5%"}')
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == 'line 2, field "score": expected a number, got a string "5%"'


@pytest.mark.django_db
def test_a_file_name_with_a_nul_or_markup_is_refused_or_kept_as_text(client, team):
    make_versions(team, rows=2)  # the accepted files hold two records
    client = client_for(team[Role.DATA_STEWARD])
    data = GOOD + b'{"id": "b", "label": 0, "score": 0.1, "groups": {"sex": "M"}}\n'
    # Django's multipart parser drops control characters from a file name...
    response = _api_upload(client, team, "r\x00<img src=x onerror=alert(1)>.jsonl", data)
    assert response.status_code == 202, response.content[:300]
    run = EvaluationRun.objects.get()
    assert run.original_name == "r<img src=x onerror=alert(1)>.jsonl"
    client.force_login(team[Role.DATA_STEWARD])
    page = client.get(reverse("run", args=[team.project.slug, run.pk])).content.decode()
    assert "r&lt;img src=x onerror=alert(1)&gt;.jsonl" in page and "<img src=x" not in page
    # ...and a name from anywhere else is refused before anything is stored.
    with pytest.raises(ValidationError) as caught:
        evaluation_services.evaluation_run_start(
            actor=team[Role.DATA_STEWARD],
            gate=team.project.gates.get(phase=Phase.PLANNING),
            model_version=team.project.model_versions.get(),
            dataset_version=team.project.dataset_versions.get(),
            upload=ContentFile(data, name="r\x00.jsonl"),
            metrics=["auroc"],
        )
    assert caught.value.message_dict["file"] == ["The file name contains a NUL character."]
    assert EvaluationRun.objects.count() == 1


# --- The parser: hostile input refused, legitimate input untouched ----------------------------


def _parse(data: bytes, name: str = "r.jsonl"):
    return parse_records(io.BytesIO(data), filename=name, metrics=[])


@pytest.mark.parametrize(
    "record",
    [
        # The contract's deepest field, a list of spans, many times over (many brackets).
        {"label": [[i, i + 1, "DRUG"] for i in range(300)], "prediction": [[0, 1, "DRUG"]]},
        {"label": 1, "extra": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))},
        {"label": 1, "output": "[" * DEEP + "{" * DEEP + DIGITS},  # text, not structure
        {"label": 1, "output": "a backslash then u0000: \\u0000", "groups": {"sex": "F😀"}},
        {"label": 1, "risk": int("9" * MAX_NUMBER_DIGITS)},
    ],
    ids=["many spans", "at the depth limit", "brackets in text", "escapes", "longest number"],
)
def test_legitimate_records_are_not_mistaken_for_hostile_ones(record):
    line = json.dumps(record).encode() + b"\n"  # ASCII escapes, as most writers produce
    assert _parse(line).n == 1
    assert _parse(json.dumps(record, ensure_ascii=False).encode() + b"\n").n == 1


@pytest.mark.parametrize(
    "line, field, reason",
    [
        ('{"label": 1, "x": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}", "x", NESTED),
        ('{"label": 1, "x": ' + "[" * DEEP, "x", NESTED),  # never closed
        ("[" * DEEP + "]" * DEEP, None, NESTED),
        ('{"label": 1, "risk": ' + "9" * (MAX_NUMBER_DIGITS + 1) + "}", "risk", LONG),
        ('{"label": 1, "risk": -' + "9" * 5_000 + "}", "risk", LONG),
        ('{"label": 1, "groups": {"s\\u0000x": "F"}}', "groups.s\\u0000x", "the name " + NUL),
        ('{"label": 1, "meta": {"a": ["ok", "n\\u0000"]}}', "meta", NUL),
        ('{"label": 1, "id": "r\\u0000"}', "id", NUL),
        ('{"label": 1, "groups": {"sex": "F\x00"}}', "groups.sex", NUL),  # raw, in a string
    ],
    ids=[
        "one level too deep",
        "never closed",
        "deep top level",
        "one digit too many",
        "negative",
        "NUL in a name",
        "NUL deep in an ignored field",
        "NUL in the id",
        "raw NUL",
    ],
)
def test_the_parser_names_line_field_and_reason(line, field, reason):
    with pytest.raises(RecordError) as caught:
        _parse(GOOD + line.encode() + b"\n")
    assert (caught.value.line, caught.value.field) == (2, field)
    assert caught.value.message.startswith(reason)


def test_a_nul_in_a_csv_header_is_refused_on_line_1():
    with pytest.raises(RecordError) as caught:
        _parse(b"label,group.s\x00x\n1,F\n", "r.csv")
    assert caught.value.line == 1 and NUL in caught.value.message


# --- Item 13: the file is read before the gate is locked ----------------------------------------


@pytest.fixture
def reads(monkeypatch):
    """Records, for each time the upload path reads a records file, whether a transaction was
    open (on SQLite an open transaction holds the whole database's write lock)."""
    seen: list[bool] = []
    real = evaluation_services.parse_records

    def parse_and_note(*args, **kwargs):
        seen.append(connection.in_atomic_block)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation_services, "parse_records", parse_and_note)
    monkeypatch.setattr(evaluation_services, "enqueue_evaluation", lambda run_id: None)
    return seen


VALID = GOOD + b'{"id": "b", "label": 0, "score": 0.1, "groups": {"sex": "M"}}\n'


def test_an_upload_reads_the_file_before_taking_any_lock(live_db, client, reads):
    from tests.factories import make_team

    team = make_team()
    make_versions(team, rows=2)  # the accepted files hold two records
    client.force_login(team[Role.DATA_STEWARD])
    assert _page_upload(client, team, "r.jsonl", VALID).status_code == 302
    api = client_for(team[Role.DATA_STEWARD])
    assert _api_upload(api, team, "r.jsonl", VALID).status_code == 202
    keyed = _api_upload(api, team, "r.jsonl", VALID, HTTP_IDEMPOTENCY_KEY="upload-1")
    assert keyed.status_code == 202
    assert reads == [False, False, False]
    assert EvaluationRun.objects.count() == 3


def test_the_gate_is_checked_again_under_the_lock_after_the_read(live_db, client, monkeypatch):
    # The gate may be approved and locked while a large file is read: the run is then refused
    # under the lock, and the file copied to storage is removed.
    from tests.factories import make_team

    team = make_team()
    make_versions(team, rows=2)  # the accepted files hold two records
    gate = team.project.gates.get(phase=Phase.PLANNING)
    real = evaluation_services.parse_records

    def parse_while_the_gate_locks(*args, **kwargs):
        result = real(*args, **kwargs)
        Gate.objects.filter(pk=gate.pk).update(state=Gate.State.LOCKED)
        return result

    monkeypatch.setattr(evaluation_services, "parse_records", parse_while_the_gate_locks)
    api = client_for(team[Role.DATA_STEWARD])
    before = AuditEvent.objects.count()
    response = _api_upload(api, team, "r.jsonl", VALID)
    assert response.status_code == 400
    assert "gate is locked" in response.json()["error"]["fields"]["gate"][0]
    _stored_nothing(before)


def _admin_upload(client, team, name: str, data: bytes):
    model, dataset = team.project.model_versions.get(), team.project.dataset_versions.get()
    return client.post(
        "/admin/lifecycle/evaluationrun/add/",
        {
            "gate": team.project.gates.get(phase=Phase.PLANNING).pk,
            "model_version": model.pk,
            "dataset_version": dataset.pk,
            "upload": SimpleUploadedFile(name, data),
            "task": "",
            "metrics_text": "auroc",
            "seed": 0,
            "resamples": 100,
        },
    )


def test_an_admin_upload_reads_the_file_before_the_admin_opens_its_transaction(
    live_db, client, reads
):
    # Django's admin runs every add in one transaction: the file is read before it, and a
    # refused file is still shown in the admin's form, under the file input.
    from tests.factories import make_team

    team = make_team()
    make_versions(team, rows=2)  # the accepted files hold two records
    steward = team[Role.DATA_STEWARD]
    steward.is_staff = True
    steward.save()
    client.force_login(steward)
    name, data, line, field, reason = HOSTILE["5,001-digit integer"]
    before = AuditEvent.objects.count()
    refused = _admin_upload(client, team, name, data)
    assert refused.status_code == 200
    assert reads == [False]
    page = refused.content.decode()
    errors = page[page.index('id="id_upload_error"') :]
    assert _sentence(line, field, reason) in html.unescape(errors[: errors.index("</ul>")])
    _stored_nothing(before)

    assert _admin_upload(client, team, "r.jsonl", VALID).status_code == 302
    assert reads == [False, False]
    run = EvaluationRun.objects.get()
    assert run.original_name == "r.jsonl" and run.requested_by == steward
    assert AuditEvent.objects.filter(action="evaluation_run.start").count() == 1
