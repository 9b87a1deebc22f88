"""The `audit` report: a project's audit trail for a period, as PDF, CSV and JSON Lines.

What 21 CFR 11.10(e) and 45 CFR 170.315(d)(3) ask an audit trail report to show: for each
event its time (UTC), who (the printed name sealed in the event), what action on which object,
the old and new values, the reason and the request it came from, by time period. Everything
is read from the sealed payload of each event (`audits.chain.build_payload`), the record of
truth, never from the indexed columns beside it; the columns only select the events.

The content is a pure function of (project, since, until, chain length): only events with
sequence <= the chain head the report was generated at are read, so `verify_report --live`
can recompute it with `audit_content` later, however many events were appended since.

Memory: events are streamed from the database in chunks of `CHUNK_SIZE` rows as plain tuples
(no model instances), but the content the seal is computed over holds every event of the
period as a dictionary, about 3 KB each (measured): a 100,000-event trail needs some 300 MB
for the content plus the file. CSV and JSON Lines have no further limit (20,000 events: 4 s).
The PDF is refused above `PDF_EVENT_LIMIT` events: WeasyPrint lays the whole document out in
memory at about 15 events a page, measured at 65 ms and 0.45 MB per event (2,000 events: 130 s,
1 GB).
"""

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.template.loader import render_to_string

from audits import diff
from audits.models import Action, AuditEvent
from audits.reports.common import Built, Progress, no_progress
from audits.reports.pdf import Attachment, render_pdf
from audits.trail import chain_key
from governance.models import Project

KIND = "audit"
REPORT_FORMAT = "llm-governance-report"
FORMATS = ("pdf", "csv", "jsonl")
# Rows fetched per database round trip while streaming the trail.
CHUNK_SIZE = 2_000
# About 6 minutes and 2.5 GB of layout (see above); beyond it a narrower period, or the CSV or
# JSON Lines of the same trail, serve the auditor better than a job that exhausts its worker.
PDF_EVENT_LIMIT = 5_000

CSV_COLUMNS = (
    "sequence",
    "recorded_at",
    "actor",
    "actor_type",
    "action",
    "action_label",
    "object_type",
    "object_id",
    "object",
    "before",
    "after",
    "reason",
    "request_id",
    "ip",
    "hash",
)
# A spreadsheet runs a cell beginning with one of these as a formula (OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# The JSON Lines copy embedded in the PDF. IANA has no registration for JSON Lines;
# "application/json" would be wrong (a JSON parser rejects the file after its first line), so
# the de-facto type that tools reading newline-delimited JSON recognise is used.
JSONL_MIME = "application/x-ndjson"
JSONL_ATTACHMENT = "audit-trail.jsonl"

_LABELS = dict(Action.choices)


# --- The period -------------------------------------------------------------------------------


def period_bounds(
    since: date | None, until: date | None
) -> tuple[datetime | None, datetime | None]:
    """The instants a period covers, both inclusive: `since` from 00:00:00 UTC, `until` through
    23:59:59.999999 UTC. Refuses a period that ends before it starts."""
    if since is not None and until is not None and since > until:
        raise ValueError(
            f"The period starts ({since.isoformat()}) after it ends ({until.isoformat()}): "
            "choose a start date on or before the end date."
        )
    start = datetime.combine(since, time.min, tzinfo=UTC) if since is not None else None
    end = (
        datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
        - timedelta(microseconds=1)
        if until is not None
        else None
    )
    return start, end


def _period(since: date | None, until: date | None) -> dict[str, str | None]:
    return {
        "since": since.isoformat() if since is not None else None,
        "until": until.isoformat() if until is not None else None,
    }


# --- Reading the trail ------------------------------------------------------------------------


def _utc(at: str) -> str:
    """The sealed time ("…+00:00", always UTC with microseconds) as "…Z". Microseconds are
    kept: they order events recorded within the same second, as the trail does."""
    moment = datetime.fromisoformat(at).astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def event_entry(payload: str, hash_: str, prev_hash: str) -> dict[str, Any]:
    """One event as the report gives it, read from its sealed payload."""
    data = json.loads(payload)
    return {
        "sequence": data["seq"],
        "recorded_at": _utc(data["at"]),
        "actor": data["actor_name"],
        "actor_type": data["actor_type"],
        "action": data["action"],
        # An action retired from the code keeps its code as its label.
        "action_label": str(_LABELS.get(data["action"], data["action"])),
        "object": {
            "type": data["target_type"],
            "id": data["target_id"],
            "text": data["target_text"],
        },
        "before": data["before"],
        "after": data["after"],
        "reason": data["reason"],
        "request_id": data["request_id"],
        "ip": data["ip"],
        "hash": hash_,
        "prev_hash": prev_hash,
    }


def _events(
    project: Project,
    chain: dict[str, Any],
    since: date | None,
    until: date | None,
    progress: Progress,
) -> Iterator[dict[str, Any]]:
    """The period's events up to the chain head, oldest first, streamed in chunks."""
    if chain["key"] != chain_key(project):
        raise ValueError(f"chain {chain['key']!r} is not the audit chain of project {project.slug}")
    start, end = period_bounds(since, until)
    events = AuditEvent.objects.filter(chain__key=chain["key"], sequence__lte=chain["length"])
    if start is not None:
        events = events.filter(recorded_at__gte=start)
    if end is not None:
        events = events.filter(recorded_at__lte=end)
    total = events.count()
    progress(5, f"Reading {total} audit event{'s' if total != 1 else ''}")
    rows = (
        events.order_by("sequence")
        .values_list("payload", "hash", "prev_hash")
        .iterator(chunk_size=CHUNK_SIZE)
    )
    shown = 5
    for done, (payload, hash_, prev_hash) in enumerate(rows, start=1):
        yield event_entry(payload, hash_, prev_hash)
        percent = 5 + 60 * done // max(total, 1)
        if percent > shown and (done % CHUNK_SIZE == 0 or done == total):
            shown = percent
            progress(percent, f"Read {done} of {total} audit events")


def audit_content(
    project: Project,
    *,
    chain: dict[str, Any],
    since: date | None,
    until: date | None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """What the audit report says: the project's events with recorded_at in the period
    (either end optional, both inclusive) and sequence <= chain["length"].

    A pure function of (project, since, until, chain length), which is what lets
    `verify_report --live` recompute it and compare."""
    events = list(_events(project, chain, since, until, progress))
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "kind": KIND,
        "project": {"slug": project.slug, "name": project.name},
        "period": _period(since, until),
        "chain": chain,
        "event_count": len(events),
        "events": events,
    }


# --- CSV ---------------------------------------------------------------------------------------


def neutralise(text: str) -> str:
    """A cell a spreadsheet shows as text: one beginning like a formula gets a leading `'`
    (the OWASP advice), which spreadsheets hide and treat as "this is text"."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _json_cell(value: Any) -> str:
    # Empty for "nothing recorded" (None), which reads better in a spreadsheet than null.
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def csv_row(event: dict[str, Any]) -> list[str | int]:
    """One event as a CSV row: every text cell neutralised, the sequence a plain number."""
    cells = [
        event["recorded_at"],
        event["actor"],
        event["actor_type"],
        event["action"],
        event["action_label"],
        event["object"]["type"],
        event["object"]["id"],
        event["object"]["text"],
        _json_cell(event["before"]),
        _json_cell(event["after"]),
        event["reason"],
        event["request_id"],
        event["ip"] or "",
        event["hash"],
    ]
    return [int(event["sequence"]), *(neutralise(str(cell)) for cell in cells)]


def audit_csv(content: dict[str, Any], progress: Progress = no_progress) -> bytes:
    """The trail as CSV (RFC 4180: "\\r\\n" line ends, quoted only where needed), ending with
    a line end so the seal row can follow.

    UTF-8 with a byte-order mark: Excel, which most auditors open a CSV with, reads a CSV
    without one in the local legacy code page and garbles every accented name; with it,
    Excel, LibreOffice and Python's "utf-8-sig" all read the file as UTF-8."""
    out = io.StringIO(newline="")
    out.write("\ufeff")
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for event in content["events"]:
        writer.writerow(csv_row(event))
    progress(90, "CSV written")
    return out.getvalue().encode("utf-8")


# --- JSON Lines --------------------------------------------------------------------------------


def _line(value: Any) -> str:
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    )


def jsonl_header(content: dict[str, Any]) -> dict[str, Any]:
    """The first line of the JSON Lines file: what it covers, without the events."""
    return {
        key: content[key]
        for key in ("format", "version", "kind", "project", "period", "chain", "event_count")
    }


def audit_jsonl(content: dict[str, Any], progress: Progress = no_progress) -> bytes:
    """The trail as JSON Lines: a header object, then one event a line, each compact with
    sorted keys; ends with a newline so the seal line can follow."""
    lines = [_line(jsonl_header(content))]
    lines.extend(_line(event) for event in content["events"])
    progress(90, "JSON Lines written")
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- PDF -------------------------------------------------------------------------------------


def _readable_time(recorded_at: str) -> str:
    """ "2026-03-02T14:05:09.123456Z" as "2026-03-02 14:05:09" (the column says UTC)."""
    return recorded_at[:19].replace("T", " ")


def _period_text(period: dict[str, str | None]) -> str:
    since, until = period["since"], period["until"]
    if since and until:
        return f"{since} to {until} inclusive (UTC days)"
    if since:
        return f"from {since} (UTC) to the chain head"
    if until:
        return f"from the first event to {until} inclusive (UTC)"
    return "the whole trail, to the chain head"


def audit_pdf(content: dict[str, Any], progress: Progress = no_progress) -> bytes:
    """The trail as a printable PDF/A-3b: a cover (project, period, chain head and checkpoint,
    number of events), one table row per event with what changed field by field
    (`audits.diff`, as the timeline shows it), and the JSON Lines file embedded as the
    electronic copy."""
    count = content["event_count"]
    if count > PDF_EVENT_LIMIT:
        raise ValueError(
            f"The period holds {count} audit events; a PDF is limited to {PDF_EVENT_LIMIT}. "
            "Choose a shorter period, or the CSV or JSON Lines format, which hold any number."
        )
    rows = [
        {
            "event": event,
            "time": _readable_time(event["recorded_at"]),
            "changes": diff.changes(event["before"], event["after"]),
        }
        for event in content["events"]
    ]
    progress(70, f"Laying out {count} audit event{'s' if count != 1 else ''} as PDF")
    html = render_to_string(
        "reports/audit.html",
        {
            "content": content,
            "project": content["project"],
            "period_text": _period_text(content["period"]),
            "chain": content["chain"],
            "rows": rows,
            "attachment_name": JSONL_ATTACHMENT,
        },
    )
    electronic_copy = Attachment(
        name=JSONL_ATTACHMENT,
        data=audit_jsonl(content),
        mime=JSONL_MIME,
        description="The same audit trail in electronic form: a header line, then one event "
        "a line (JSON Lines).",
        relationship="Data",
    )
    body = render_pdf(
        html,
        title=f"Audit trail: {content['project']['name']}",
        attachments=[electronic_copy],
    )
    progress(95, "PDF written")
    return body


# --- The report --------------------------------------------------------------------------------


def file_name(project: Project, since: date | None, until: date | None, format: str) -> str:
    """`<slug>-audit-<since>-<until>.<ext>`, "all" for an open end."""
    start = since.isoformat() if since is not None else "all"
    end = until.isoformat() if until is not None else "all"
    period = "all" if since is None and until is None else f"{start}-{end}"
    return f"{project.slug}-audit-{period}.{format}"


def build_audit_report(
    project: Project,
    *,
    chain: dict[str, Any],
    progress: Progress = no_progress,
    format: str = "pdf",
    since: date | None = None,
    until: date | None = None,
) -> Built:
    """The audit trail report of `project` for the period, at the chain head `chain`
    (`common.chain_state`), as "pdf", "csv" or "jsonl"."""
    if format not in FORMATS:
        raise ValueError(f"The audit report comes as {', '.join(FORMATS)}, not {format!r}.")
    period_bounds(since, until)  # refuse a reversed period before reading anything
    content = audit_content(project, chain=chain, since=since, until=until, progress=progress)
    if format == "csv":
        body = audit_csv(content, progress)
    elif format == "jsonl":
        body = audit_jsonl(content, progress)
    else:
        body = audit_pdf(content, progress)
    return Built(
        content=content,
        body=body,
        format=format,
        file_name=file_name(project, since, until, format),
    )
