"""Signed checkpoints of every chain, kept outside the database.

A checkpoint says "chain C had N events ending in hash H at time T", signed with HMAC-SHA256
under AUDIT_CHECKPOINT_KEY. They are appended to one file per chain in AUDIT_CHECKPOINT_DIR,
which should live on storage the database administrators cannot rewrite (another host, a
WORM bucket, or at least `chattr +a`). A database restored from an old backup, or a chain whose
tail was cut or rewritten, no longer matches the last checkpoint.
"""

import hashlib
import hmac
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from audits import chain as hashchain

SUFFIX = ".checkpoints.jsonl"


@dataclass(frozen=True)
class Checkpoint:
    chain: str
    length: int
    head: str
    time: str
    key_id: str
    signature: str

    def fields(self) -> dict:
        return {
            "chain": self.chain,
            "length": self.length,
            "head": self.head,
            "time": self.time,
            "key_id": self.key_id,
        }


class CheckpointError(Exception):
    """A checkpoint file that was altered, or signed with another key."""


def _key() -> bytes:
    return settings.AUDIT_CHECKPOINT_KEY.encode()


def key_id() -> str:
    return "hmac-sha256:" + hashlib.sha256(_key()).hexdigest()[:12]


def _sign(fields: dict) -> str:
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def directory() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR)


def path_for(chain: str) -> Path:
    safe = chain.replace(":", "__").replace("/", "_")
    return directory() / f"{safe}{SUFFIX}"


def append(chain: str, length: int, head: str, time: str) -> Checkpoint:
    """Sign and append one checkpoint; the line is flushed to disk before returning."""
    fields = {"chain": chain, "length": length, "head": head, "time": time, "key_id": key_id()}
    checkpoint = Checkpoint(**fields, signature=_sign(fields))
    directory().mkdir(parents=True, exist_ok=True)
    line = json.dumps({**fields, "signature": checkpoint.signature}, sort_keys=True) + "\n"
    descriptor = os.open(path_for(chain), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line.encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return checkpoint


def read(path: Path) -> list[Checkpoint]:
    """All checkpoints of one file, each signature checked; raises on the first bad line."""
    checkpoints = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                signature = data.pop("signature")
                checkpoint = Checkpoint(**data, signature=signature)
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CheckpointError(f"{path}: line {number} is not a checkpoint") from None
            if not hmac.compare_digest(_sign(checkpoint.fields()), signature):
                raise CheckpointError(
                    f"{path}: line {number} has an invalid signature (altered, or signed with "
                    f"another key than {key_id()})"
                )
            checkpoints.append(checkpoint)
    for earlier, later in itertools.pairwise(checkpoints):
        if later.length < earlier.length:
            raise CheckpointError(
                f"{path}: checkpoint of {later.time} records fewer events ({later.length}) than "
                f"the one of {earlier.time} ({earlier.length})"
            )
    return checkpoints


def latest_by_chain() -> dict[str, Checkpoint]:
    """The last checkpoint of every chain that has a checkpoint file."""
    latest: dict[str, Checkpoint] = {}
    if not directory().is_dir():
        return latest
    for path in sorted(directory().glob(f"*{SUFFIX}")):
        checkpoints = read(path)
        if checkpoints:
            latest[checkpoints[-1].chain] = checkpoints[-1]
    return latest


def now_iso() -> str:
    return hashchain.format_time(timezone.now())
