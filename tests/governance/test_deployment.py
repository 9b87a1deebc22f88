"""Settings, production checks and the docker-compose file (Docker itself does not run here)."""

import base64
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_in_production_mode():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY="x" * 30 + "a-long-production-secret-key-value-1234567890",
        DEBUG="0",
        ALLOWED_HOSTS="governance.hospital.example",
        AUDIT_CHECKPOINT_SIGNING_KEY=_ed25519_private_key(),
        REPORT_SIGNING_KEY=_ed25519_private_key(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_refuses_production_without_a_report_key():
    result = run_manage(
        "check",
        "--deploy",
        SECRET_KEY="x" * 30 + "a-long-production-secret-key-value-1234567890",
        DEBUG="0",
        ALLOWED_HOSTS="governance.hospital.example",
        AUDIT_CHECKPOINT_SIGNING_KEY=_ed25519_private_key(),
        REPORT_SIGNING_KEY="",
    )
    assert result.returncode != 0
    assert (
        "audits.E004) REPORT_SIGNING_KEY is not set: compliance reports would be sealed with "
        "the development key derived from SECRET_KEY." in result.stderr
    )
    assert "audit_keygen --report" in result.stderr


def _ed25519_private_key() -> str:
    """A checkpoint signing key as `manage.py audit_keygen` prints it (production needs one)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return base64.b64encode(raw).decode()


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", SECRET_KEY="", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_malformed_setting_names_the_variable():
    result = run_manage("check", DEBUG="1", EVIDENCE_MAX_BYTES="fifty megabytes")
    assert result.returncode != 0
    assert "EVIDENCE_MAX_BYTES must be an integer" in result.stderr


def test_env_example_lists_every_setting_the_code_reads():
    settings_source = (ROOT / "config" / "settings.py").read_text()
    example = (ROOT / ".env.example").read_text()
    import re

    read = set(re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z_]+)"', settings_source))
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert read - listed == set()


COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_five_services_with_health_checks():
    services = COMPOSE["services"]
    assert set(services) == {"web", "worker", "beat", "postgres", "redis"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert "uploads" in COMPOSE["volumes"]
    assert any("uploads:" in v for v in services["web"]["volumes"])
    # The worker writes the audit checkpoints and web verifies them: one shared volume, or every
    # recorded checkpoint looks deleted. And never DEBUG, whatever the development .env says.
    assert "checkpoints" in COMPOSE["volumes"]
    for name in ("web", "worker", "beat"):
        directory = services[name]["environment"]["AUDIT_CHECKPOINT_DIR"]
        assert f"checkpoints:{directory}" in services[name]["volumes"], name
        assert services[name]["environment"]["DEBUG"] == "0", name


def _commands(service: dict) -> list[list[str]]:
    command = service.get("command")
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else command
    if words[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in words[2].split("&&")]
    return [words]


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_every_compose_command_exists_in_the_project(name):
    service = COMPOSE["services"][name]
    commands = _commands(service)
    assert commands
    for words in commands:
        if words[0] == "python" and words[1] == "manage.py":
            assert words[2] in get_commands(), f"{name}: unknown management command {words[2]}"
        elif words[0] == "gunicorn":
            module, _, attribute = words[1].partition(":")
            assert (ROOT / (module.replace(".", "/") + ".py")).exists()
            assert (attribute or "application") == "application"
        elif words[0] == "celery":
            assert words[1:3] == ["-A", "config"]
            assert words[3] in {"worker", "beat"}
            from config.celery import app

            assert app.main == "governance"
        else:
            raise AssertionError(f"{name}: unexpected command {words}")
    pyproject = (ROOT / "pyproject.toml").read_text()
    for package in ("gunicorn", "celery"):
        assert package in pyproject


def test_the_dockerfile_copies_every_app():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for app in (
        "config",
        "demo",
        "governance",
        "lifecycle",
        "audits",
        "templates",
        "static",
        "manage.py",
    ):
        assert f"COPY {app}" in dockerfile
