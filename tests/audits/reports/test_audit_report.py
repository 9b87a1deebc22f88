"""The audit trail report: a project's events for a period as CSV, JSON Lines and PDF."""

import csv
import io
import json
import subprocess
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pikepdf
import pytest

from audits import trail
from audits.context import AuditContext, bind
from audits.models import AuditChain
from audits.reports import audit_report
from audits.reports.audit_report import (
    CSV_COLUMNS,
    FORMULA_STARTS,
    JSONL_ATTACHMENT,
    audit_content,
    build_audit_report,
    neutralise,
    period_bounds,
)
from audits.reports.common import canonical_json, chain_state
from governance import services as governance_services
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.projects import services as project_services
from tests.factories import UserFactory, make_team

pytestmark = pytest.mark.django_db


def comment(team, body: str, actor=None) -> None:
    item = team.project.checklist_items.first()
    checklist_services.comment_add(actor=actor or team.creator, item=item, body=body)


def build(team, **kwargs):
    return build_audit_report(team.project, chain=chain_state(team.project), **kwargs)


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 with a byte-order mark, for Excel
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def jsonl_lines(body: bytes) -> list[dict]:
    text = body.decode("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def at(moment: datetime):
    """A clock for the trail stopped at `moment` (the trail reads the time at each append)."""
    return SimpleNamespace(now=lambda: moment)


# --- What the report says ---------------------------------------------------------------------


def test_it_gives_each_event_with_its_old_and_new_values(team):
    item = team.project.checklist_items.first()
    with bind(AuditContext(request_id="req-42", ip="10.1.2.3")):
        checklist_services.checklist_item_update(
            actor=team.creator, item=item, status="not_applicable", justification="Out of scope."
        )
    built = build(team, format="jsonl")
    content = built.content
    assert content["format"] == "llm-governance-report" and content["version"] == 1
    assert content["kind"] == "audit"
    assert content["project"] == {"slug": team.project.slug, "name": team.project.name}
    assert content["period"] == {"since": None, "until": None}
    assert content["chain"] == chain_state(team.project)
    events = content["events"]
    assert content["event_count"] == len(events) == content["chain"]["length"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))

    change = events[-1]
    assert change["action"] == "checklist_item.update"
    assert change["action_label"] == "Checklist item status changed"
    assert change["actor"] == team.creator.get_full_name() and change["actor_type"] == "user"
    assert change["before"] == {"status": "not_started", "justification": ""}
    assert change["after"] == {"status": "not_applicable", "justification": "Out of scope."}
    assert change["object"] == {
        "type": "lifecycle.checklistitem",
        "id": str(item.pk),
        "text": item.title,
    }
    assert (change["request_id"], change["ip"]) == ("req-42", "10.1.2.3")
    assert change["recorded_at"].endswith("Z") and "+" not in change["recorded_at"]
    assert change["prev_hash"] == events[-2]["hash"]
    assert change["hash"] == content["chain"]["head_hash"]
    canonical_json(content)  # serialisable the one way the seal needs


def test_the_sealed_payload_is_what_it_reads(team):
    # The printed name is the one sealed at the time, not the account's current name.
    member = team[Role.COMMITTEE_MEMBER]
    comment(team, "Reviewed.", actor=member)
    sealed_name = member.get_full_name()
    member.first_name, member.last_name = "Renamed", "Later"
    member.save()
    events = build(team, format="jsonl").content["events"]
    assert events[-1]["actor"] == sealed_name
    assert events[-1]["after"]["body"] == "Reviewed."


def test_the_period_includes_both_whole_days_and_nothing_beyond(team, monkeypatch):
    until = date(2031, 5, 20)
    last_instant = datetime(2031, 5, 20, 23, 59, 59, 999_999, tzinfo=UTC)
    for moment, body in (
        (datetime(2031, 5, 9, 23, 59, 59, 999_999, tzinfo=UTC), "day before since"),
        (datetime(2031, 5, 10, 0, 0, tzinfo=UTC), "since, midnight"),
        (datetime(2031, 5, 15, 12, 0, tzinfo=UTC), "middle"),
        (datetime(2031, 5, 20, 23, 59, tzinfo=UTC), "until, 23:59"),
        (last_instant, "until, last microsecond"),
        (last_instant + timedelta(microseconds=1), "next day, midnight"),
    ):
        monkeypatch.setattr(trail, "timezone", at(moment))
        comment(team, body)
    monkeypatch.undo()

    content = build(team, format="jsonl", since=date(2031, 5, 10), until=until).content
    assert [e["after"]["body"] for e in content["events"]] == [
        "since, midnight",
        "middle",
        "until, 23:59",
        "until, last microsecond",
    ]
    assert content["period"] == {"since": "2031-05-10", "until": "2031-05-20"}
    assert content["events"][-1]["recorded_at"] == "2031-05-20T23:59:59.999999Z"

    only_until = build(team, format="jsonl", until=until).content["events"]
    assert "next day, midnight" not in [e["after"] and e["after"].get("body") for e in only_until]
    assert only_until[0]["sequence"] == 1  # open start: from the project's first event
    only_since = build(team, format="jsonl", since=date(2031, 5, 21)).content["events"]
    assert [e["after"]["body"] for e in only_since] == ["next day, midnight"]


def test_a_period_around_todays_events(team):
    comment(team, "Today.")
    today = datetime.fromisoformat(
        build(team, format="jsonl").content["events"][-1]["recorded_at"]
    ).date()
    everything = build(team, format="jsonl").content["events"]
    assert build(team, format="jsonl", since=today, until=today).content["events"] == everything
    assert build(team, format="jsonl", until=today - timedelta(days=1)).content["events"] == []
    assert build(team, format="jsonl", since=today + timedelta(days=1)).content["events"] == []


def test_a_period_that_ends_before_it_starts_is_refused(team):
    with pytest.raises(ValueError, match=r"starts \(2026-03-02\) after it ends \(2026-03-01\)"):
        build(team, format="csv", since=date(2026, 3, 2), until=date(2026, 3, 1))
    with pytest.raises(ValueError, match="after it ends"):
        audit_content(
            team.project,
            chain=chain_state(team.project),
            since=date(2026, 3, 2),
            until=date(2026, 3, 1),
        )
    # One day is a period: since == until.
    assert period_bounds(date(2026, 3, 1), date(2026, 3, 1)) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC),
    )


def test_the_content_is_a_function_of_the_chain_head(team):
    comment(team, "Before the report.")
    head = chain_state(team.project)
    first = build_audit_report(team.project, chain=head, format="jsonl")
    again = build_audit_report(team.project, chain=head, format="jsonl")
    assert canonical_json(first.content) == canonical_json(again.content)
    assert first.body == again.body

    comment(team, "After the report.")
    checklist_services.checklist_item_update(
        actor=team.creator, item=team.project.checklist_items.first(), status="in_progress"
    )
    assert AuditChain.objects.get(project=team.project).length == head["length"] + 2
    later = build_audit_report(team.project, chain=head, format="jsonl")
    assert canonical_json(later.content) == canonical_json(first.content)
    assert later.body == first.body
    recomputed = audit_content(team.project, chain=head, since=None, until=None)
    assert canonical_json(recomputed) == canonical_json(first.content)
    # A report at the new head does see the new events.
    assert build(team, format="jsonl").content["event_count"] == head["length"] + 2


def test_a_chain_of_another_project_is_refused(team):
    other = make_team()
    with pytest.raises(ValueError, match="is not the audit chain"):
        build_audit_report(team.project, chain=chain_state(other.project), format="csv")


def test_progress_is_reported_as_events_are_read(team):
    seen: list[tuple[int, str]] = []
    build(team, format="csv", progress=lambda percent, note: seen.append((percent, note)))
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] >= 65
    assert any(note.startswith("Read ") for _, note in seen)


def test_file_names_name_the_period(team):
    slug = team.project.slug
    assert build(team, format="csv").file_name == f"{slug}-audit-all.csv"
    assert (
        build(team, format="jsonl", since=date(2026, 1, 1), until=date(2026, 3, 31)).file_name
        == f"{slug}-audit-2026-01-01-2026-03-31.jsonl"
    )
    assert (
        build(team, format="csv", until=date(2026, 3, 31)).file_name
        == f"{slug}-audit-all-2026-03-31.csv"
    )
    assert build(team, format="csv", until=date(2026, 3, 31)).format == "csv"


def test_an_unknown_format_is_refused(team):
    with pytest.raises(ValueError, match="not 'xlsx'"):
        build(team, format="xlsx")


# --- CSV ---------------------------------------------------------------------------------------


def test_the_csv_is_rfc_4180_with_one_row_per_event(team):
    item = team.project.checklist_items.first()
    evidence = checklist_services.evidence_add_note(actor=team.creator, item=item, note="Draft.")
    reason = 'Line one,\nline "two".'
    checklist_services.evidence_withdraw(actor=team.creator, evidence=evidence, reason=reason)
    built = build(team, format="csv")
    assert built.body.endswith(b"\r\n")  # the seal row can be appended
    header_line = built.body.split(b"\r\n")[0].decode("utf-8-sig")
    assert header_line == ",".join(CSV_COLUMNS)
    # The only bare line feed is the one inside the quoted reason.
    assert built.body.replace(b"\r\n", b"").count(b"\n") == 1
    assert b',"Line one,\nline ""two"".",' in built.body
    rows = csv_rows(built.body)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + built.content["event_count"]
    assert [row[0] for row in rows[1:]] == [
        str(n) for n in range(1, built.content["event_count"] + 1)
    ]
    last = dict(zip(CSV_COLUMNS, rows[-1], strict=True))
    assert last["reason"] == reason
    assert json.loads(last["before"]) == {"withdrawn": False}
    assert json.loads(last["after"])["withdrawn"] is True
    assert last["action_label"] == "Evidence withdrawn"
    added = dict(zip(CSV_COLUMNS, rows[-2], strict=True))
    assert added["before"] == ""  # nothing recorded before new evidence
    assert last["recorded_at"].endswith("Z")


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_every_formula_start_is_neutralised(start):
    assert neutralise(f"{start}SUM(1)") == f"'{start}SUM(1)"
    assert neutralise(f"a{start}1") == f"a{start}1"
    assert neutralise("") == ""


def test_cells_a_spreadsheet_would_run_as_formulas_are_text(team):
    hostile = ['=HYPERLINK("http://evil.example/","open")', "+1", "-2", "@SUM(1)", "\t=1"]
    lead = team.creator
    project = project_services.project_update(actor=lead, project=team.project, name=hostile[0])
    item = project.checklist_items.first()
    checklist_services.checklist_item_update(
        actor=lead, item=item, status="not_applicable", justification=hostile[2]
    )
    evidence = checklist_services.evidence_add_note(actor=lead, item=item, note="Wrong file.")
    checklist_services.evidence_withdraw(actor=lead, evidence=evidence, reason=hostile[1])
    for name in hostile[3:]:
        # A printed name (username with no full name) that starts like a formula.
        user = UserFactory(username=name, first_name="", last_name="")
        governance_services.membership_add(
            actor=lead, project=project, user=user, role=Role.COMMITTEE_MEMBER
        )
        comment(SimpleNamespace(project=project, creator=user), name)
    project = project_services.project_update(actor=lead, project=project, name="\r=2")

    built = build_audit_report(project, chain=chain_state(project), format="csv")
    cells = [cell for row in csv_rows(built.body)[1:] for cell in row]
    dangerous = [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    assert dangerous == []
    for text in [hostile[0], hostile[1], *hostile[3:], "\r=2"]:
        assert "'" + text in cells, text  # a whole cell: object text, reason, actor
    # Inside JSON the justification cannot start a cell; it is there as recorded.
    assert any(
        json.loads(c) == {"status": "not_applicable", "justification": "-2"}
        for c in cells
        if c.startswith("{")
    )
    # The other formats keep the values exactly as recorded.
    events = build_audit_report(project, chain=chain_state(project), format="jsonl").content[
        "events"
    ]
    assert {e["reason"] for e in events} >= {"+1"}
    assert {e["actor"] for e in events} >= {"@SUM(1)", "\t=1"}


def test_the_csv_and_the_json_lines_carry_the_same_events(team):
    comment(team, "Ünïcödé — “quoted”, with a comma")
    with bind(AuditContext(request_id="req-7", ip="192.0.2.1")):
        checklist_services.checklist_item_update(
            actor=team.creator, item=team.project.checklist_items.first(), status="in_progress"
        )
    head = chain_state(team.project)
    rows = csv_rows(build_audit_report(team.project, chain=head, format="csv").body)[1:]
    lines = jsonl_lines(build_audit_report(team.project, chain=head, format="jsonl").body)
    events = lines[1:]
    assert len(rows) == len(events) == head["length"]
    for row, event in zip(rows, events, strict=True):
        cells = dict(zip(CSV_COLUMNS, row, strict=True))
        assert int(cells["sequence"]) == event["sequence"]
        assert cells["recorded_at"] == event["recorded_at"]
        assert (cells["actor"], cells["actor_type"]) == (event["actor"], event["actor_type"])
        assert (cells["action"], cells["action_label"]) == (event["action"], event["action_label"])
        assert [cells["object_type"], cells["object_id"], cells["object"]] == [
            event["object"]["type"],
            event["object"]["id"],
            event["object"]["text"],
        ]
        assert json.loads(cells["before"] or "null") == event["before"]
        assert json.loads(cells["after"] or "null") == event["after"]
        assert (cells["reason"], cells["request_id"]) == (event["reason"], event["request_id"])
        assert (cells["ip"] or None) == event["ip"]
        assert cells["hash"] == event["hash"]
    assert events[-1]["request_id"] == "req-7"


# --- JSON Lines --------------------------------------------------------------------------------


def test_the_json_lines_start_with_what_they_cover(team):
    built = build(team, format="jsonl", since=date(2020, 1, 1))
    text = built.body.decode("utf-8")
    lines = text.splitlines()
    header = json.loads(lines[0])
    assert header == {
        "format": "llm-governance-report",
        "version": 1,
        "kind": "audit",
        "project": {"slug": team.project.slug, "name": team.project.name},
        "period": {"since": "2020-01-01", "until": None},
        "chain": built.content["chain"],
        "event_count": built.content["event_count"],
    }
    assert len(lines) == 1 + header["event_count"]
    assert [json.loads(line) for line in lines[1:]] == built.content["events"]
    # Compact, sorted keys, non-ASCII as is.
    event = json.loads(lines[1])
    assert lines[1] == json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- PDF ---------------------------------------------------------------------------------------


def pdf_text(tmp_path, body: bytes) -> str:
    path = tmp_path / "audit.pdf"
    path.write_bytes(body)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_the_pdf_renders_the_events_and_embeds_the_json_lines(team, tmp_path):
    item = team.project.checklist_items.first()
    with bind(AuditContext(request_id="req-pdf-1", ip="10.9.8.7")):
        checklist_services.checklist_item_update(
            actor=team.creator, item=item, status="not_applicable", justification="Not used here."
        )
    built = build(team)
    assert built.format == "pdf" and built.file_name.endswith(".pdf")
    assert built.body.startswith(b"%PDF-")

    path = tmp_path / "audit.pdf"
    path.write_bytes(built.body)
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(path), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages and all(p.stat().st_size > 1000 for p in pages)

    text = pdf_text(tmp_path, built.body)
    assert f"Audit trail: {team.project.name}" in text
    assert "the whole trail, to the chain head" in text
    assert f"event #{built.content['chain']['length']}" in text
    assert "Checklist item status" in text  # the label wraps in its column
    assert "Role granted" in text and "Project registered" in text
    assert "not_started → not_applicable" in text
    assert "req-pdf-1" in text and "10.9.8.7" in text
    assert team.creator.get_full_name() in text

    with pikepdf.open(path) as pdf:
        page = pdf.pages[0]
        width, height = float(page.mediabox[2]), float(page.mediabox[3])
        assert width > height  # landscape
        attached = pdf.attachments[JSONL_ATTACHMENT].get_file()
        assert str(attached.mime_type) == "application/x-ndjson"
        assert attached.read_bytes() == build(team, format="jsonl").body


def test_markup_in_user_text_prints_as_literal_text(team, tmp_path):
    project = project_services.project_update(
        actor=team.creator, project=team.project, name="<b>Bold</b> & <i>co</i>"
    )
    team.project = project
    comment(team, "<script>alert(1)</script>")
    text = pdf_text(tmp_path, build(team).body)
    assert "Audit trail: <b>Bold</b> & <i>co</i>" in text
    assert "<script>alert(1)</script>" in text


def test_a_period_without_events_says_so(team, tmp_path):
    text = pdf_text(tmp_path, build(team, until=date(2000, 1, 1)).body)
    assert "No events were recorded in this period." in text
    assert "from the first event to 2000-01-01 inclusive (UTC)" in text


def test_a_pdf_of_too_many_events_is_refused(team, monkeypatch):
    monkeypatch.setattr(audit_report, "PDF_EVENT_LIMIT", 3)
    with pytest.raises(ValueError, match="limited to 3"):
        build(team)
    assert build(team, format="csv").content["event_count"] > 3
