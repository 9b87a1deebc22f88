"""The database settings each environment gets: persistent, health-checked PostgreSQL connections
by default in production, the embedded SQLite file as it always was, and the override.

Each case loads the settings in a fresh process with exactly the environment it names, as
gunicorn and Celery do at start-up (the settings module is read once per process).
"""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = "postgres://governance:secret@db.hospital.example:5432/governance"
PRODUCTION = {"DEBUG": "0", "SECRET_KEY": "x" * 30 + "a-long-production-secret-key-1234567890"}
# Everything a test here sets, cleared first so that the suite's own environment (the
# PostgreSQL pass sets DATABASE_URL) never leaks into a case.
CONTROLLED = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "DATABASE_CONN_MAX_AGE", "ALLOWED_HOSTS"}

PRINT_DATABASE = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
keys = ("ENGINE", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "OPTIONS")
print(json.dumps({k: db.get(k) for k in keys}))
"""


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def database(**env: str) -> dict:
    """The default database's settings as a process started with `env` has them."""
    result = run([sys.executable, "-c", "import django; django.setup()\n" + PRINT_DATABASE], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_it_keeps_postgresql_connections_for_a_minute_by_default_and_checks_them():
    db = database(**PRODUCTION, DATABASE_URL=POSTGRES)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert db["CONN_MAX_AGE"] == 60
    assert db["CONN_HEALTH_CHECKS"] is True


@pytest.mark.parametrize(("age", "checked"), [("0", False), ("300", True)])
def test_it_takes_the_connection_age_from_the_environment(age, checked):
    db = database(**PRODUCTION, DATABASE_URL=POSTGRES, DATABASE_CONN_MAX_AGE=age)
    assert db["CONN_MAX_AGE"] == int(age)
    # Nothing is reused with 0, so there is nothing to check before reuse either.
    assert db["CONN_HEALTH_CHECKS"] is checked


def test_it_leaves_the_embedded_sqlite_file_as_it_was():
    db = database(**PRODUCTION)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["CONN_MAX_AGE"] == 0
    assert db["CONN_HEALTH_CHECKS"] is False
    assert "PRAGMA journal_mode=WAL" in db["OPTIONS"]["init_command"]


@pytest.mark.parametrize(
    ("age", "message"),
    [
        ("a minute", "DATABASE_CONN_MAX_AGE must be an integer; got 'a minute'"),
        ("-1", "DATABASE_CONN_MAX_AGE must be at least 0; got -1"),
    ],
)
def test_a_malformed_connection_age_stops_the_process_naming_the_variable(age, message):
    result = run(
        [sys.executable, "manage.py", "check"],
        **PRODUCTION,
        DATABASE_URL=POSTGRES,
        DATABASE_CONN_MAX_AGE=age,
    )
    assert result.returncode != 0
    assert message in result.stderr


def _ed25519_private_key() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return base64.b64encode(raw).decode()


def test_check_deploy_is_clean_with_persistent_postgresql_connections():
    # `check` does not connect to the database: the address need not exist.
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        **PRODUCTION,
        DATABASE_URL=POSTGRES,
        ALLOWED_HOSTS="governance.hospital.example",
        AUDIT_CHECKPOINT_SIGNING_KEY=_ed25519_private_key(),
        REPORT_SIGNING_KEY=_ed25519_private_key(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
