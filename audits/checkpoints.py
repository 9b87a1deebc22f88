"""Signed checkpoints of every chain, kept outside the database.

A checkpoint says "chain C had N events ending in hash H at time T", signed with the Ed25519
private key AUDIT_CHECKPOINT_SIGNING_KEY (the line format and the checks of every line are in
`audits.checkpoint_format`, which needs no Django). They are appended to one file per chain in
AUDIT_CHECKPOINT_DIR, which should live on storage the database administrators cannot rewrite
(another host, a WORM bucket, or at least `chattr +a`). Each checkpoint is also recorded as an
`audit.checkpoint` event of the global chain, so verification knows which lines must exist.
A database restored from an old backup, or a chain whose tail was cut or rewritten, no longer
matches its checkpoints.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from audits import chain as hashchain
from audits.checkpoint_format import (
    Checkpoint,
    CheckpointError,
    InvalidKey,
    Verifier,
    derive_private_key,
    load_private_key,
    load_public_keys,
    parse,
    read_lines,
    sign,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "append",
    "by_chain",
    "latest",
    "locked",
    "path_for",
    "read",
]

SUFFIX = ".checkpoints.jsonl"


def configured_signing_key() -> Ed25519PrivateKey | None:
    """The explicit signing key, or None when AUDIT_CHECKPOINT_SIGNING_KEY is unset."""
    text = settings.AUDIT_CHECKPOINT_SIGNING_KEY
    if not text:
        return None
    try:
        return load_private_key(text)
    except InvalidKey as exc:
        raise ImproperlyConfigured(f"AUDIT_CHECKPOINT_SIGNING_KEY: {exc}") from None


def configured_public_keys() -> list[Ed25519PublicKey]:
    try:
        return load_public_keys(settings.AUDIT_CHECKPOINT_PUBLIC_KEY)
    except InvalidKey as exc:
        raise ImproperlyConfigured(f"AUDIT_CHECKPOINT_PUBLIC_KEY: {exc}") from None


def uses_development_key() -> bool:
    return not (settings.AUDIT_CHECKPOINT_SIGNING_KEY or settings.AUDIT_CHECKPOINT_PUBLIC_KEY)


def signing_key() -> Ed25519PrivateKey:
    """The key that signs new checkpoints.

    Without any configured key (development), one derived from SECRET_KEY, which `make run`
    generates per machine; `manage.py check --deploy` refuses that in production.
    """
    key = configured_signing_key()
    if key is not None:
        return key
    if not uses_development_key():
        raise ImproperlyConfigured(
            "AUDIT_CHECKPOINT_SIGNING_KEY is not set: this host has only the public key, so it "
            "can verify checkpoints but not write them."
        )
    return derive_private_key(settings.SECRET_KEY)


def verifier() -> Verifier:
    """The configured public keys (and that of the signing key), and the legacy HMAC key."""
    keys = configured_public_keys()
    private = configured_signing_key()
    if private is None and uses_development_key():
        private = derive_private_key(settings.SECRET_KEY)
    if private is not None:
        keys.append(private.public_key())
    legacy = settings.AUDIT_CHECKPOINT_KEY
    return Verifier(public_keys=keys, hmac_key=legacy.encode() if legacy else None)


def directory() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR)


def path_for(chain: str) -> Path:
    safe = chain.replace(":", "__").replace("/", "_")
    return directory() / f"{safe}{SUFFIX}"


def signed(chain: str, length: int, head: str, time: str) -> Checkpoint:
    return sign(signing_key(), chain, length, head, time)


def write(checkpoint: Checkpoint) -> None:
    """Append one checkpoint line; it is flushed to disk before returning."""
    directory().mkdir(parents=True, exist_ok=True)
    line = checkpoint.as_json() + "\n"
    descriptor = os.open(path_for(checkpoint.chain), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line.encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def locked(chain: str) -> Iterator[list[Checkpoint]]:
    """Hold the chain's checkpoint file against other checkpoint writers, and yield its lines
    as they are now.

    Beat's task and a hand-run `audit_checkpoint` may overlap, each having verified the chain
    at another moment; whoever appends must decide from the file as it is under the lock, or a
    slower writer appends a shorter line after a longer one and the file fails for good. An
    advisory `flock` on the file itself: it holds across processes and containers sharing the
    volume, and the kernel releases it if the writer dies.
    """
    directory().mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path_for(chain), os.O_RDONLY | os.O_CREAT, 0o640)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield for_chain(chain)
    finally:
        os.close(descriptor)  # releases the lock


def append(chain: str, length: int, head: str, time: str) -> Checkpoint:
    """Sign and append one checkpoint (not recorded in the trail: see write_checkpoints)."""
    checkpoint = signed(chain, length, head, time)
    write(checkpoint)
    return checkpoint


def read(path: Path, trusted: Verifier | None = None) -> list[Checkpoint]:
    """All checkpoints of one file, every line checked; raises on the first bad line."""
    with path.open(encoding="utf-8") as handle:
        return read_lines(handle, str(path), trusted or verifier())


def by_chain() -> dict[str, list[Checkpoint]]:
    """Every checkpoint of every chain that has a checkpoint file, oldest first."""
    found: dict[str, list[Checkpoint]] = {}
    if not directory().is_dir():
        return found
    trusted = verifier()
    for path in sorted(directory().glob(f"*{SUFFIX}")):
        checkpoints = read(path, trusted)
        if not checkpoints:
            continue
        chain = checkpoints[0].chain
        if path.name != path_for(chain).name:
            raise CheckpointError(
                f"{path}: holds the checkpoints of {chain}, whose file is {path_for(chain).name}"
            )
        found[chain] = checkpoints
    return found


def for_chain(chain: str) -> list[Checkpoint]:
    """Every checkpoint of one chain (none when it has no file)."""
    path = path_for(chain)
    if not path.is_file():
        return []
    checkpoints = read(path)
    for checkpoint in checkpoints:
        if checkpoint.chain != chain:
            raise CheckpointError(
                f"{path}: line {checkpoint.line} is a checkpoint of another chain"
            )
    return checkpoints


def latest(chain: str) -> Checkpoint | None:
    """The last checkpoint of one chain, its signature checked; None when it has none.

    Reads only the end of the chain's file, so its cost does not grow with the file: the
    page that shows it is viewed far more often than checkpoints are written. The lines
    before it are checked by every full verification (`by_chain`, `for_chain`).
    """
    path = path_for(chain)
    if not path.is_file():
        return None
    tail = b""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        block = 4096
        while True:
            start = max(0, size - block)
            handle.seek(start)
            tail = handle.read(size - start)
            lines = tail.splitlines()
            # Unless the read began at the start of the file, its first line may be cut.
            whole = lines if start == 0 else lines[1:]
            whole = [line for line in whole if line.strip()]
            if whole or start == 0:
                break
            block *= 4
    if not whole:
        return None
    source = f"{path} (last line)"
    try:
        checkpoint = parse(whole[-1].decode("utf-8"), 0, source)
    except UnicodeDecodeError:
        raise CheckpointError(f"{source} is not a checkpoint") from None
    reason = verifier().problem(checkpoint)
    if reason:
        raise CheckpointError(f"{source} {reason}")
    if checkpoint.chain != chain:
        raise CheckpointError(f"{source} is a checkpoint of another chain ({checkpoint.chain})")
    return checkpoint


def now_iso() -> str:
    return hashchain.format_time(timezone.now())
