"""Verify an exported audit chain offline: no Django settings, no database, no secret.

    python -m audits.verify_export EXPORT.jsonl [--public-key KEY] [--checkpoints FILE]

Checks every hash and link of the export and that it ends where its header says. With the
checkpoint public key (`manage.py audit_keygen --public` prints it; base64, PEM, or a file),
it also checks the signature of every checkpoint the export records (`audit.checkpoint`
events of the global chain) and that those of the exported chain agree with it; with
`--checkpoints`, every line of that chain's checkpoint file is checked against the export.
Exit status: 0 verified, 1 tampering (the message names the line and event), 2 unusable input.
`manage.py verify_audit --file` runs this same code with the configured keys.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from audits import chain as hashchain
from audits.checkpoint_format import (
    Checkpoint,
    CheckpointError,
    InvalidKey,
    Verifier,
    compare,
    load_public_keys,
    read_lines,
    remembered,
)

# audits.models.Action.AUDIT_CHECKPOINT, spelled out: this module must not import Django.
CHECKPOINT_ACTION = "audit.checkpoint"
_MARK = f'"action":"{CHECKPOINT_ACTION}"'.encode()


@dataclass
class Outcome:
    """What verifying one export found: exit status and what to print."""

    status: int = 0
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def fail(self, message: str, status: int = 1) -> "Outcome":
        self.status = status
        self.err.append(message if status != 1 else f"TAMPERING DETECTED: {message}")
        return self


def recorded_in(path: Path) -> list[tuple[str, int, Checkpoint]]:
    """The checkpoints the export records, as (line, event sequence, checkpoint).

    A quick pass before the walk, so the walk keeps exactly the hashes to compare; the walk
    then proves these very lines genuine.
    """
    found = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if _MARK not in line:
                continue
            try:
                event = json.loads(line)["event"]
                if event["action"] != CHECKPOINT_ACTION:
                    continue
                after = event["after"]
                checkpoint = Checkpoint.from_record(after)
            except (ValueError, KeyError, TypeError):
                continue  # not well formed: the walk names the line
            found.append((f"line {number}", event["seq"], checkpoint))
    return found


def verify_file(
    path: Path, *, verifier: Verifier | None, checkpoint_files: Sequence[Path] = ()
) -> Outcome:
    """Verify one export file; see the module docstring."""
    outcome = Outcome()
    try:
        recorded = recorded_in(path)
        files = {}
        for checkpoint_file in checkpoint_files:
            if verifier is None:
                return outcome.fail("checking a checkpoint file needs the public key", 2)
            with checkpoint_file.open(encoding="utf-8") as handle:
                files[checkpoint_file] = read_lines(handle, str(checkpoint_file), verifier)
        remember = remembered(c for _, _, c in recorded)
        for lines in files.values():
            remember |= remembered(lines)
        with path.open("rb") as handle:
            header, result = hashchain.verify_export(handle, remember=remember)
    except OSError as exc:
        return outcome.fail(f"Cannot read {exc.filename}: {exc.strerror}", 2)
    except CheckpointError as exc:
        return outcome.fail(str(exc))
    except (ValueError, KeyError, TypeError) as exc:
        return outcome.fail(f"{path}: {exc}")
    if result.problem:
        return outcome.fail(f"{path}: {result.problem}")
    chain = header["chain"]
    if verifier is not None:
        for where, sequence, checkpoint in recorded:
            reason = verifier.problem(checkpoint)
            if reason:
                return outcome.fail(
                    f"{path}: {where} (event #{sequence}): the checkpoint it records {reason}"
                )
    own = [c for _, _, c in recorded if c.chain == chain]
    problem = compare(chain, result, own, complete=False)
    if problem:
        return outcome.fail(f"{path}: {problem} (as recorded in the export)")
    for checkpoint_file, lines in files.items():
        if lines and lines[0].chain != chain:
            return outcome.fail(
                f"{checkpoint_file} holds the checkpoints of {lines[0].chain}, the export is of "
                f"{chain}",
                2,
            )
        problem = compare(chain, result, lines, complete=False)
        if problem:
            return outcome.fail(f"{path}: {problem} ({checkpoint_file})")
    outcome.out.append(f"OK: {path}: chain {chain}, {result.length} event(s), head {result.head}")
    if recorded:
        if verifier is None:
            outcome.out.append(
                f"{len(recorded)} recorded checkpoint signature(s) not checked: give the "
                "public key (--public-key) to check them."
            )
        else:
            outcome.out.append(f"{len(recorded)} recorded checkpoint signature(s) verified.")
    for checkpoint_file, lines in files.items():
        compared = sum(1 for c in lines if c.length <= result.length)
        later = " (the others are newer than the export)" if compared < len(lines) else ""
        outcome.out.append(
            f"{compared} of {len(lines)} checkpoint(s) in {checkpoint_file} matched{later}."
        )
    return outcome


def run(
    path: Path,
    *,
    verifier: Verifier | None,
    checkpoint_files: Sequence[Path] = (),
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """Verify, print the outcome, return the exit status (shared with `verify_audit --file`)."""
    outcome = verify_file(path, verifier=verifier, checkpoint_files=checkpoint_files)
    for line in outcome.out:
        stdout.write(line + "\n")
    for line in outcome.err:
        stderr.write(line + "\n")
    return outcome.status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audits.verify_export",
        description="Verify an audit export offline (no settings, database or secret needed).",
    )
    parser.add_argument("file", type=Path, metavar="EXPORT", help="a file from export_audit")
    parser.add_argument(
        "--public-key",
        metavar="KEY",
        help="the checkpoint public key(s): base64, PEM, or a file; commas between several",
    )
    parser.add_argument(
        "--checkpoints",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="also check the exported chain against this checkpoint file (needs the key)",
    )
    parser.add_argument(
        "--hmac-key",
        metavar="KEY",
        help="the legacy AUDIT_CHECKPOINT_KEY, for checkpoint lines written before Ed25519",
    )
    args = parser.parse_args(argv)
    verifier = None
    if args.public_key or args.hmac_key:
        try:
            keys = load_public_keys(args.public_key or "")
        except InvalidKey as exc:
            parser.error(f"--public-key: {exc}")
        verifier = Verifier(
            public_keys=keys, hmac_key=args.hmac_key.encode() if args.hmac_key else None
        )
    return run(
        args.file,
        verifier=verifier,
        checkpoint_files=args.checkpoints,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )


if __name__ == "__main__":
    raise SystemExit(main())
