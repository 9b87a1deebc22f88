"""What every report kind shares: the built file, canonical JSON, the chain head it covers.

A kind's builder (`dossier`, `audit_report`, `chai`, `hti1`) turns a project into a `Built`:
its canonical content (a JSON-able dict: what the report says) and the file's bytes before
sealing. `audits.reports.services` seals and stores it (docs/reports.md).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from audits import checkpoints
from audits.models import AuditChain
from audits.trail import chain_key
from governance.models import Project

# Called by a builder as it goes: (percent done 0-100, what it is doing).
Progress = Callable[[int, str], None]


def no_progress(percent: int, note: str) -> None:
    """The progress callback when nobody is watching (the command line, tests)."""


@dataclass
class Built:
    """One generated report before its seal: `content` is what it says, `body` the file."""

    content: dict[str, Any]
    body: bytes
    format: str
    file_name: str
    # Facts the export needed but the project has not recorded (CHAI, HTI-1), by key.
    missing_facts: list[str] = field(default_factory=list)


def canonical_json(value: Any) -> bytes:
    """The one serialisation that content hashes and seals are computed over: sorted keys, no
    whitespace, UTF-8. `verify_report` recomputes it with the same code."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain_state(project: Project) -> dict[str, Any]:
    """The project's audit chain head and last signed checkpoint, as a report records them."""
    key = chain_key(project)
    chain = AuditChain.objects.filter(key=key).first()
    recorded = checkpoints.for_chain(key)
    last = recorded[-1] if recorded else None
    return {
        "key": key,
        "length": chain.length if chain else 0,
        "head_hash": chain.head_hash if chain else "0" * 64,
        "checkpoint": (
            {**last.fields(), "signature": last.signature} if last is not None else None
        ),
    }
