"""Verify a sealed compliance report offline: no Django settings, no database, no secret.

    python -m audits.reports.verify REPORT [--key PUBLIC_KEY]

Checks the seal's signature, then (where the file carries it) the embedded JSON content, then
the file's bytes, and prints who sealed it (the key's fingerprint) and what it covers. With
`--key` (base64, PEM or a file: the installation publishes it at /reports/key/), the report
must have been sealed with that key. Exit status: 0 verified, 1 the report does not verify
(the message names the first problem), 2 unusable input.
`manage.py verify_report` runs this same code, and with `--live` also asks the database.
"""

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audits.checkpoint_format import InvalidKey, load_public_keys
from audits.reports import seal_format

KIND_NAMES = {
    "dossier": "Decision dossier",
    "audit": "Audit trail report",
    "chai": "CHAI Applied Model Card",
    "hti1": "HTI-1 source attributes",
}
MAX_REPORT_BYTES = 2 * 1024**3


@dataclass
class Outcome:
    """What verifying one report found: exit status, what to print, and the seal."""

    status: int = 0
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    seal: dict[str, Any] | None = None
    data: bytes = b""

    def fail(self, message: str, status: int = 1) -> "Outcome":
        self.status = status
        self.err.append(message if status != 1 else f"NOT VERIFIED: {message}")
        return self


def describe(seal: dict[str, Any]) -> list[str]:
    """What a verified seal says the report is and covers, one line per fact."""
    report = seal.get("report") or {}
    project = seal.get("project") or {}
    covers = seal.get("covers") or {}
    chain = seal.get("chain") or {}
    kind = KIND_NAMES.get(str(report.get("kind")), report.get("kind"))
    if covers.get("gate"):
        scope = f"the {covers['gate']} gate only"
    elif covers.get("since") or covers.get("until"):
        scope = f"period {covers.get('since') or 'the start'} to {covers.get('until') or 'now'}"
    else:
        scope = "the whole project"
    lines = [
        f"  Report:     {kind} ({report.get('format')}), report #{report.get('id')}, "
        f"file {report.get('file_name')}",
        f"  Project:    {project.get('name')} ({project.get('slug')}), {scope}",
        f"  Generated:  {seal.get('generated_at')} for {seal.get('requested_by')} "
        f"at {seal.get('installation') or 'an unnamed installation'}",
        f"  Audit chain: {chain.get('key')}, {chain.get('length')} events, "
        f"head {chain.get('head_hash')}",
    ]
    checkpoint = chain.get("checkpoint")
    if checkpoint:
        lines.append(
            f"  Checkpoint: {checkpoint.get('length')} events at {checkpoint.get('time')} "
            f"(signed by {checkpoint.get('key_id')})"
        )
    else:
        lines.append("  Checkpoint: none signed yet for this chain")
    lines.append(f"  Content:    SHA-256 {seal.get('content_sha256')}")
    missing = seal.get("missing_facts") or []
    if missing:
        lines.append(f"  Not recorded by the project: {', '.join(missing)}")
    return lines


def _read(path: Path, outcome: Outcome) -> bytes | None:
    """The file's bytes, or None with the reason on `outcome` (a device, a directory or a file
    beyond any report's size is refused before reading)."""
    try:
        if not path.is_file():
            outcome.fail(f"{path}: not a regular file", status=2)
            return None
        with path.open("rb") as handle:
            data = handle.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        outcome.fail(f"{path}: {exc.strerror or exc}", status=2)
        return None
    if len(data) > MAX_REPORT_BYTES:
        outcome.fail(f"{path}: larger than any report this product makes", status=2)
        return None
    return data


def run(path: Path, key: str | None = None) -> Outcome:
    """Verify the report at `path` (with `key`, against that public key)."""
    outcome = Outcome()
    expected = None
    if key:
        try:
            expected = load_public_keys(key)
        except (InvalidKey, ValueError, OSError) as exc:  # also a binary or unreadable file
            return outcome.fail(f"--key: not a public key ({exc})", status=2)
    data = _read(path, outcome)
    if data is None:
        return outcome
    outcome.data = data
    try:
        opened = seal_format.open_sealed(data)
        outcome.seal = opened.seal
        seal_format.check(opened, expected)
    except seal_format.SealError as exc:
        return outcome.fail(f"{path}: {exc}")
    except Exception as exc:  # a file no report writer made (a corrupt PDF structure, ...)
        return outcome.fail(
            f"{path}: cannot be read as a sealed report ({type(exc).__name__}: {exc})", status=2
        )
    seal = opened.seal
    outcome.out.append(f"Report seal verified: {path}")
    trust = (
        "the key given with --key"
        if expected
        else "compare it with the installation's published report key, or pass --key"
    )
    outcome.out.append(
        f"  Sealed with: Ed25519 key {seal['key_id']}, fingerprint "
        f"{seal_format.fingerprint_of(seal['public_key'])} ({trust})"
    )
    if opened.content is not None:
        outcome.out.append(f"  Embedded:   {opened.content[0]} matches the seal")
    outcome.out.extend(describe(seal))
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audits.reports.verify", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("report", type=Path, help="the report file (PDF, XML, CSV, JSONL, JSON)")
    parser.add_argument(
        "--key",
        metavar="PUBLIC_KEY",
        help="the installation's public report key (base64, PEM or a file)",
    )
    args = parser.parse_args(argv)
    outcome = run(args.report, args.key)
    for line in outcome.out:
        print(line)
    for line in outcome.err:
        print(line, file=sys.stderr)
    return outcome.status


if __name__ == "__main__":
    sys.exit(main())
