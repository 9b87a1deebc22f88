"""System checks of the audit checkpoint keys (`manage.py check`, `check --deploy`)."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from audits import checkpoint_format, checkpoints

HINT = (
    "Run `python manage.py audit_keygen` once; set AUDIT_CHECKPOINT_SIGNING_KEY where "
    "checkpoints are written and AUDIT_CHECKPOINT_PUBLIC_KEY everywhere (docs/audit.md)."
)


@register(Tags.security, deploy=True)
def checkpoint_key_is_set(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """In production the checkpoints must not be signed with the key derived from SECRET_KEY:
    whoever can read the settings could forge them."""
    if not checkpoints.uses_development_key():
        return []
    return [
        Error(
            "AUDIT_CHECKPOINT_SIGNING_KEY is not set: audit checkpoints would be signed with the "
            "development key derived from SECRET_KEY.",
            hint=HINT,
            id="audits.E001",
        )
    ]


@register(Tags.security)
def checkpoint_keys_are_usable(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Keys that do not parse, or a public key that cannot verify what this host signs."""
    try:
        private = checkpoints.configured_signing_key()
        public = checkpoints.configured_public_keys()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=HINT, id="audits.E002")]
    if private is None or not settings.AUDIT_CHECKPOINT_PUBLIC_KEY:
        return []
    own = checkpoint_format.key_id(private.public_key())
    if own not in {checkpoint_format.key_id(key) for key in public}:
        return [
            Error(
                f"AUDIT_CHECKPOINT_PUBLIC_KEY does not include the public key of "
                f"AUDIT_CHECKPOINT_SIGNING_KEY ({own}): offline verifiers given the public key "
                "would refuse the checkpoints written here.",
                hint=HINT,
                id="audits.E003",
            )
        ]
    return []
