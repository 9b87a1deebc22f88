"""Template helpers for the audit timeline: an event's change as rows, long text shortened."""

from typing import Any

from django import template

from audits import diff
from audits.models import AuditEvent

register = template.Library()

# Longer text is shown shortened (at a word boundary) with the whole of it one click away.
LONG_TEXT = 160


@register.filter
def audit_changes(event: AuditEvent) -> diff.Changes:
    """`{% with changes=event|audit_changes %}`: the event's before/after, field by field."""
    return diff.changes(event.before, event.after)


@register.inclusion_tag("audits/partials/long_text.html")
def long_text(text: Any, limit: int = LONG_TEXT) -> dict[str, Any]:
    """Text as it is when short; otherwise its start, cut at a word, in a <details> that opens
    on the whole of it. Escaped by the template like any other value."""
    text = "" if text is None else str(text)
    return {"text": text, "short": diff.shorten(text, limit) if len(text) > limit else None}
