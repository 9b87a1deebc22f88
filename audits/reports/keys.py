"""The installation's report key (REPORT_SIGNING_KEY): loaded, derived in development, published."""

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audits.checkpoint_format import (
    InvalidKey,
    encode_public,
    key_id,
    load_private_key,
    load_public_keys,
)
from audits.reports.seal_format import fingerprint

_DEV_KEY_INFO = b"llm-governance report seal ed25519 development key"


def uses_development_key() -> bool:
    return not settings.REPORT_SIGNING_KEY


def signing_key() -> Ed25519PrivateKey:
    """The key that seals reports: REPORT_SIGNING_KEY, or in development one derived from
    SECRET_KEY (distinct from the checkpoint key); `check --deploy` refuses the latter."""
    text = settings.REPORT_SIGNING_KEY
    if not text:
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DEV_KEY_INFO).derive(
            settings.SECRET_KEY.encode()
        )
        return Ed25519PrivateKey.from_private_bytes(seed)
    try:
        return load_private_key(text)
    except InvalidKey as exc:
        raise ImproperlyConfigured(f"REPORT_SIGNING_KEY: {exc}") from None


def trusted_public_keys() -> list[Ed25519PublicKey]:
    """The key in use and those it replaced (REPORT_PREVIOUS_PUBLIC_KEYS): reports sealed
    before a key rotation still verify on the report page."""
    try:
        previous = load_public_keys(settings.REPORT_PREVIOUS_PUBLIC_KEYS)
    except InvalidKey as exc:
        raise ImproperlyConfigured(f"REPORT_PREVIOUS_PUBLIC_KEYS: {exc}") from None
    return [signing_key().public_key(), *previous]


def published() -> dict[str, str | bool]:
    """What the installation publishes about its report key (page, API, docs)."""
    public = signing_key().public_key()
    return {
        "algorithm": "Ed25519",
        "key_id": key_id(public),
        "fingerprint": fingerprint(public),
        "public_key": encode_public(public),
        "development_key": uses_development_key(),
    }
