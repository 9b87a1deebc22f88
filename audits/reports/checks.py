"""System checks of the report key (`manage.py check`, `check --deploy`)."""

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from audits.reports import keys

HINT = (
    "Run `python manage.py audit_keygen --report` once and set REPORT_SIGNING_KEY where the "
    "web and worker processes run (docs/reports.md)."
)


@register(Tags.security, deploy=True)
def report_key_is_set(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Production reports must not be sealed with a key anyone holding SECRET_KEY can derive."""
    if not keys.uses_development_key():
        return []
    return [
        Error(
            "REPORT_SIGNING_KEY is not set: compliance reports would be sealed with the "
            "development key derived from SECRET_KEY.",
            hint=HINT,
            id="audits.E004",
        )
    ]


@register(Tags.security)
def report_key_is_usable(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    try:
        keys.trusted_public_keys()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=HINT, id="audits.E005")]
    return []
