"""Checkpoint lines: their format, the keys that sign them, and how every line is checked.

Plain Python and `cryptography`, no Django, so that an auditor can check checkpoints offline
(`python -m audits.verify_export`) with nothing but the public key.

A checkpoint line is one JSON object:

    {"chain": …, "length": N, "head": H, "time": T, "key_id": K, "signature": S}

signed over the canonical JSON of every member but the signature (keys sorted, no spaces).
The key id says how: `ed25519:<16 hex>` (the first 16 hex digits of SHA-256 over the raw
public key; S is the 64-byte Ed25519 signature in hex) for lines written since Ed25519, or
`hmac-sha256:<12 hex>` (HMAC-SHA256 under AUDIT_CHECKPOINT_KEY) for lines written before, which
still verify so that existing deployments keep their history. Ed25519 needs only the public
key to verify, so the verifier cannot forge; HMAC cannot tell a verifier from a forger, so a
legacy line is accepted only before the first Ed25519 line of its file.
"""

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from audits.chain import GENESIS_HASH, Problem, WalkResult

ED25519 = "ed25519:"
LEGACY_HMAC = "hmac-sha256:"
_DEV_KEY_INFO = b"llm-governance audit checkpoints ed25519 development key"


class CheckpointError(Exception):
    """A checkpoint file that was altered, forged, or signed with an untrusted key."""


class InvalidKey(ValueError):
    """A key setting or argument that is not a usable Ed25519 key."""


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement "chain C had N events ending in hash H at time T"."""

    chain: str
    length: int
    head: str
    time: str
    key_id: str
    signature: str
    line: int = field(default=0, compare=False)  # where it was read, for messages

    @classmethod
    def from_record(cls, after: dict[str, Any]) -> "Checkpoint":
        """The checkpoint an `audit.checkpoint` event records (its `after`); KeyError or
        TypeError when the event was edited out of shape."""
        names = ("chain", "length", "head", "time", "key_id", "signature")
        return cls(**{name: after[name] for name in names})

    def fields(self) -> dict[str, str | int]:
        return {
            "chain": self.chain,
            "length": self.length,
            "head": self.head,
            "time": self.time,
            "key_id": self.key_id,
        }

    def as_json(self) -> str:
        return json.dumps({**self.fields(), "signature": self.signature}, sort_keys=True)

    @property
    def is_legacy(self) -> bool:
        return self.key_id.startswith(LEGACY_HMAC)


def _message(fields: dict[str, str | int]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


# --- Keys ---------------------------------------------------------------------------------------


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return ED25519 + hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def hmac_key_id(key: bytes) -> str:
    return LEGACY_HMAC + hashlib.sha256(key).hexdigest()[:12]


def encode_private(key: Ed25519PrivateKey) -> str:
    """The private key as base64 of its 32 raw bytes: one line, fit for an environment file."""
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def encode_public(key: Ed25519PublicKey) -> str:
    return base64.b64encode(_raw_public(key)).decode()


def _material(text: str) -> tuple[str, bytes]:
    """("pem", bytes) or ("raw", 32 bytes) from PEM text, base64 raw bytes, or a file path."""
    text = text.strip()
    if "-----BEGIN" in text:
        return "pem", text.encode()
    try:
        path = Path(text).expanduser()
        is_file = path.is_file()
    except OSError:  # e.g. a name too long to be a path: it is a key, not a file
        is_file = False
    if is_file:
        content = path.read_text(encoding="utf-8").strip()
        if "-----BEGIN" in content:
            return "pem", content.encode()
        text = content
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey(
            "not a key: expected PEM, base64 of the 32 raw key bytes, or the path of a file "
            "holding either"
        ) from None
    if len(raw) != 32:
        raise InvalidKey(f"not an Ed25519 key: {len(raw)} bytes, an Ed25519 key has 32")
    return "raw", raw


def load_private_key(text: str) -> Ed25519PrivateKey:
    kind, data = _material(text)
    if kind == "raw":
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey("the PEM private key is not an Ed25519 key")
    return key


def load_public_keys(text: str) -> list[Ed25519PublicKey]:
    """One or more public keys, separated by commas (old keys stay trusted after a rotation)."""
    keys = []
    for part in text.split(","):
        if not part.strip():
            continue
        kind, data = _material(part)
        if kind == "raw":
            keys.append(Ed25519PublicKey.from_public_bytes(data))
            continue
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidKey(f"not a readable PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidKey("the PEM public key is not an Ed25519 key")
        keys.append(key)
    return keys


def derive_private_key(secret: str) -> Ed25519PrivateKey:
    """A development key derived from SECRET_KEY (`check --deploy` refuses it in production)."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DEV_KEY_INFO).derive(
        secret.encode()
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def sign(key: Ed25519PrivateKey, chain: str, length: int, head: str, time: str) -> Checkpoint:
    unsigned = Checkpoint(chain, length, head, time, key_id(key.public_key()), signature="")
    signature = key.sign(_message(unsigned.fields())).hex()
    return Checkpoint(chain, length, head, time, unsigned.key_id, signature)


# --- Checking lines ---------------------------------------------------------------------------


@dataclass
class Verifier:
    """The keys a verifier trusts: Ed25519 public keys, and the legacy HMAC key if any."""

    public_keys: list[Ed25519PublicKey]
    hmac_key: bytes | None = None

    def trusted(self) -> str:
        ids = [key_id(k) for k in self.public_keys]
        return ", ".join(ids) or "none"

    def problem(self, checkpoint: Checkpoint) -> str | None:
        """Why the checkpoint's signature does not verify, or None when it does."""
        if checkpoint.is_legacy:
            if self.hmac_key is None:
                return (
                    "is signed with the legacy HMAC key, which this verifier was not given "
                    "(--hmac-key)"
                )
            expected = hmac.new(self.hmac_key, _message(checkpoint.fields()), hashlib.sha256)
            if hmac.compare_digest(expected.hexdigest(), checkpoint.signature):
                return None
            return (
                "has an invalid signature (altered, or signed with another key than "
                f"{hmac_key_id(self.hmac_key)})"
            )
        if not checkpoint.key_id.startswith(ED25519):
            return f"has an invalid signature: unknown key type {checkpoint.key_id!r}"
        keys = {key_id(k): k for k in self.public_keys}
        key = keys.get(checkpoint.key_id)
        if key is None:
            return (
                f"has an invalid signature: signed with {checkpoint.key_id}, which is not a "
                f"trusted public key (trusted: {self.trusted()})"
            )
        try:
            key.verify(bytes.fromhex(checkpoint.signature), _message(checkpoint.fields()))
        except (InvalidSignature, ValueError):
            return "has an invalid signature: the line was altered or forged"
        return None


def parse(line: str, number: int, source: str) -> Checkpoint:
    """One checkpoint line, not yet checked (`Verifier.problem`); raises if it is none."""
    try:
        data = json.loads(line)
        signature = data.pop("signature")
        checkpoint = Checkpoint(**data, signature=signature, line=number)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise CheckpointError(f"{source}: line {number} is not a checkpoint") from None
    if not (
        isinstance(checkpoint.chain, str)
        and isinstance(checkpoint.length, int)
        and isinstance(checkpoint.head, str)
        and isinstance(checkpoint.time, str)
        and isinstance(checkpoint.key_id, str)
        and isinstance(checkpoint.signature, str)
    ):
        raise CheckpointError(f"{source}: line {number} is not a checkpoint")
    return checkpoint


def read_lines(lines: Iterable[str], source: str, verifier: Verifier) -> list[Checkpoint]:
    """Every checkpoint of one file, each line checked; raises on the first bad line.

    Every line must carry a valid signature, name the file's chain, and record no fewer
    events than the line before it (and the same head when it records as many); a legacy
    HMAC line after an Ed25519 line is refused, since whoever holds the HMAC key could
    have appended it.
    """
    checkpoints: list[Checkpoint] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        checkpoint = parse(line, number, source)
        reason = verifier.problem(checkpoint)
        if reason:
            raise CheckpointError(f"{source}: line {number} {reason}")
        if checkpoints:
            first, previous = checkpoints[0], checkpoints[-1]
            if checkpoint.chain != first.chain:
                raise CheckpointError(
                    f"{source}: line {number} is a checkpoint of {checkpoint.chain}, but the "
                    f"file holds the checkpoints of {first.chain}"
                )
            if checkpoint.is_legacy and not previous.is_legacy:
                raise CheckpointError(
                    f"{source}: line {number} is signed with the legacy HMAC key after lines "
                    "signed with Ed25519: legacy lines can only precede them (a forged line)"
                )
            if checkpoint.length < previous.length:
                raise CheckpointError(
                    f"{source}: line {number}, the checkpoint of {checkpoint.time}, records "
                    f"fewer events ({checkpoint.length}) than line {previous.line}, the one of "
                    f"{previous.time} ({previous.length})"
                )
            if checkpoint.length == previous.length and checkpoint.head != previous.head:
                raise CheckpointError(
                    f"{source}: line {number} records another head for event "
                    f"#{checkpoint.length} than line {previous.line}"
                )
        checkpoints.append(checkpoint)
    return checkpoints


def remembered(checkpoints: Iterable[Checkpoint]) -> set[int]:
    """The sequence numbers whose hashes a chain walk must keep to compare the checkpoints."""
    return {c.length for c in checkpoints}


def compare(
    chain: str, result: WalkResult, checkpoints: list[Checkpoint], *, complete: bool = True
) -> Problem | None:
    """Compare a verified chain with every checkpoint of it, in order.

    `complete`: the walked chain is the whole chain (the database), so a checkpoint beyond its
    end means events were lost; an export may be older than later checkpoints, which are then
    skipped.
    """
    hashes = {0: GENESIS_HASH, **result.hashes_at}
    if complete and checkpoints and checkpoints[-1].length > result.length:
        last = checkpoints[-1]
        return Problem(
            chain,
            None,
            None,
            f"the checkpoint of {last.time} recorded {last.length} events, the chain now has "
            f"{result.length}: events were removed or an older backup was restored",
        )
    for checkpoint in checkpoints:
        if checkpoint.length > result.length:
            continue
        if hashes.get(checkpoint.length) != checkpoint.head:
            return Problem(
                chain,
                checkpoint.length,
                None,
                f"differs from the checkpoint of {checkpoint.time}: the chain up to this event "
                "was rewritten, or a different backup was restored",
            )
    return None
