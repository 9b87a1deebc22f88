"""Strict readers for settings taken from the environment.

Every setting has a safe embedded default, used when the variable is unset or empty (as in a
copied `.env.example`); a value that is present but malformed stops the process at start-up with
a message naming the variable, instead of being silently ignored.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from dotenv import dotenv_values

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value


def load_env_file(path: Path) -> None:
    """Fill in, from a local `.env` file, the variables the environment leaves unset.

    `make run` writes one with development settings so that every command the README shows works
    as printed. The environment always wins, and the test suite (pytest sets PYTEST_VERSION, also
    for the processes it starts) never reads the file: tests must not depend on a developer's
    machine.
    """
    if os.environ.get("PYTEST_VERSION") or not path.is_file():
        return
    for name, value in dotenv_values(path).items():
        if value is not None and _raw(name) is None:
            os.environ[name] = value


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = _raw(name)
    if raw is None:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]
