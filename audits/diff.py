"""An audit event's before/after values as a field-by-field change list, for people to read.

The trail stores what a service recorded: JSON values, usually flat dictionaries, sometimes
nested ones and lists. The timeline shows them as rows of field, before, after: nested
dictionaries become paths ("criteria › recall >= 0.9"), lists of plain values one
comma-separated value, lists holding dictionaries one row per element ("results #2 › metric").
Fields whose value did not change are left out and counted. Nothing here marks text safe: the
template escapes every value.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Shown in place of a value that is absent on one side (created, removed), as opposed to a
# value that is present and empty.
ABSENT = "—"
PATH_SEPARATOR = " › "


@dataclass(frozen=True)
class FieldChange:
    """One row of the diff: a field and its value before and after (None: not present)."""

    field: str
    before: str | None
    after: str | None

    @property
    def kind(self) -> str:
        """added, removed or changed: the row's CSS class and what a screen reader hears."""
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


@dataclass(frozen=True)
class Changes:
    """What an event changed: its rows, which sides it recorded, and how many fields it left
    as they were (hidden)."""

    rows: list[FieldChange] = field(default_factory=list)
    has_before: bool = False
    has_after: bool = False
    unchanged: int = 0

    @property
    def both_sides(self) -> bool:
        return self.has_before and self.has_after


def label(key: str) -> str:
    """A recorded key as people read it: `review_round` → `review round`. Keys that are not
    identifiers (a criterion's text such as `ci_low(recall) >= 0.9`) are kept as written."""
    return key.replace("_", " ") if key.isidentifier() else key


def _plain(value: Any) -> bool:
    return not isinstance(value, dict | list)


def display(value: Any) -> str:
    """One value as text: yes/no, numbers as recorded, lists of plain values comma-separated,
    an empty value named as such."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value if value.strip() else "(empty)"
    if isinstance(value, list):
        if not value:
            return "(empty list)"
        return ", ".join(display(v) for v in value)
    if isinstance(value, dict) and not value:
        return "(empty)"
    return str(value)


def _flatten(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, plain value) pairs: dictionaries and lists that hold dictionaries or lists are
    walked; everything else is a leaf, shown whole."""
    if isinstance(value, dict) and (value or not path):
        for key, inner in value.items():
            name = label(str(key))
            yield from _flatten(inner, f"{path}{PATH_SEPARATOR}{name}" if path else name)
    elif isinstance(value, list) and not all(_plain(v) for v in value):
        for index, inner in enumerate(value, start=1):
            yield from _flatten(inner, f"{path} #{index}" if path else f"#{index}")
    else:
        yield path or "value", value


def _same(old: Any, new: Any) -> bool:
    # 1, 1.0 and True compare equal in Python; a change of type is a change on the record.
    return type(old) is type(new) and old == new


def changes(before: Any, after: Any) -> Changes:
    """The field-by-field difference between an event's recorded before and after values.

    None on a side means the event recorded nothing there (a creation has no before). Rows keep
    the order the service recorded: the after side's fields first, then fields only before had.
    """
    old = dict(_flatten(before, "")) if before is not None else {}
    new = dict(_flatten(after, "")) if after is not None else {}
    rows: list[FieldChange] = []
    unchanged = 0
    for path in [*new, *(p for p in old if p not in new)]:
        if path in old and path in new and _same(old[path], new[path]):
            unchanged += 1
            continue
        rows.append(
            FieldChange(
                field=path,
                before=display(old[path]) if path in old else None,
                after=display(new[path]) if path in new else None,
            )
        )
    return Changes(
        rows=rows, has_before=before is not None, has_after=after is not None, unchanged=unchanged
    )


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with an ellipsis; a single
    word longer than the limit (a hash, a URL) is cut inside it."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.—-") + "…"
