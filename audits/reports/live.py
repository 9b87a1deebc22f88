"""`verify_report --live`: a report checked against this installation's database.

The seal proves the file is what was generated; this proves the world it describes is still
there: the audit chain, recomputed from its first event, still passes through the head the
report recorded, and the installation still holds the same report. For the audit trail report
the content is also recomputed from the live events up to that head and compared.
"""

from typing import Any

from audits.models import AuditChain, Report, ReportKind
from audits.reports import seal_format
from audits.reports.audit_report import audit_content
from audits.reports.common import canonical_json
from audits.verification import walk_chain


def live_problems(seal: dict[str, Any], data: bytes) -> list[str]:
    """What no longer matches, first problem first; empty when the report still holds."""
    report_id = (seal.get("report") or {}).get("id")
    if not isinstance(report_id, int):
        return ["the seal names no report of this installation"]
    report = Report.objects.select_related("project").filter(pk=report_id).first()
    if report is None:
        return [f"this installation has no report #{report_id}"]
    if report.project.slug != (seal.get("project") or {}).get("slug"):
        return [f"report #{report_id} here belongs to another project ({report.project.slug})"]
    if report.sha256 != seal_format.sha256(data):
        return [
            f"the file is not the report #{report_id} this installation stored (SHA-256 "
            f"{report.sha256 or 'none'})"
        ]
    problems = []
    sealed_chain = seal.get("chain") or {}
    length = int(sealed_chain.get("length") or 0)
    head = sealed_chain.get("head_hash")
    chain = AuditChain.objects.filter(key=sealed_chain.get("key")).first()
    if chain is None:
        return [f"the audit chain {sealed_chain.get('key')} no longer exists"]
    if length:
        walked = walk_chain(chain, remember=[length])
        if walked.problem is not None and (
            walked.problem.sequence is None or walked.problem.sequence <= length
        ):
            problems.append(
                f"the audit trail was rewritten at or before the report's head (event "
                f"#{length}): {walked.problem}"
            )
        elif walked.hashes_at.get(length) != head:
            live = walked.hashes_at.get(length)
            problems.append(
                f"the audit chain's event #{length} now hashes to {live or 'nothing (missing)'}, "
                f"the report recorded {head}: the trail was rewritten since"
            )
    if report.content_sha256 != seal.get("content_sha256"):
        problems.append("the content recorded for this report here differs from the sealed one")
    if not problems and report.kind == ReportKind.AUDIT:
        content = audit_content(
            report.project, chain=sealed_chain, since=report.since, until=report.until
        )
        # The project may have been renamed since; that is a new event, not a changed report.
        content["project"] = seal.get("project")
        if seal_format.sha256(canonical_json(content)) != seal.get("content_sha256"):
            problems.append(
                "the audit events the report covers, read again from the live trail, differ "
                "from the report's content"
            )
    return problems
