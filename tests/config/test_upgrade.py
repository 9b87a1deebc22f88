"""An installation of the release before the restructuring migrates forward intact.

The demo health system is built by the code of that release (its own tree, from git), then the
current code migrates the same database: every row of every table is still there, every audit
chain has the same head and verifies (`verify_audit`), and every signature that held before
still holds (record seal, manifest and evidence files), so nothing a committee signed changed.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The last release laid out the first way (governance/settings.py, lifecycle/services.py).
BEFORE = "7fe904da2cacac8d616e663af25313aa21ce7275"

# Run inside each version's own Django: everything that must survive the upgrade.
SNAPSHOT = """
import json
from django.apps import apps
from django.db import connection
counts = {}
with connection.cursor() as cursor:
    for model in apps.get_models(include_auto_created=True):
        table = model._meta.db_table
        cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
        counts[table] = cursor.fetchone()[0]
from audits.models import AuditChain
heads = {c.key: [c.length, c.head_hash] for c in AuditChain.objects.all()}
try:  # where the code of each version keeps it
    from governance.signoffs import verify
except ImportError:
    from lifecycle.gates.signoffs import verify
Signature = apps.get_model("governance", "Signature")
valid = sorted(s.pk for s in Signature.objects.all() if verify(s).valid)
print(json.dumps({"counts": counts, "heads": heads, "valid": valid}))
"""


def _git_tree(commit: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
    ).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def _manage(tree: Path, settings: str, env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=tree,
        env={**env, "DJANGO_SETTINGS_MODULE": settings, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{args} in {tree}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _snapshot(tree: Path, settings: str, env: dict) -> dict:
    # The last line: `shell` may announce its automatic imports first.
    output = _manage(tree, settings, env, "shell", "-c", SNAPSHOT)
    return json.loads(output.strip().splitlines()[-1])


def _has_history() -> bool:
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE}^{{commit}}"], capture_output=True
    )
    return probe.returncode == 0


@pytest.fixture
def database(request, tmp_path):
    """A fresh, empty database of the kind asked for: its DATABASE_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
        return
    import psycopg

    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith("postgres"):
        pytest.fail("the PostgreSQL upgrade check needs DATABASE_URL (make test starts one)")
    name = f"upgrade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(server.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_previous_release_with_its_demo_migrates_forward_intact(database, tmp_path):
    if not _has_history():
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"commit {BEFORE} is not in this clone: the upgrade cannot be checked")
        pytest.skip(f"commit {BEFORE} is not in this checkout")
    old = tmp_path / "before"
    _git_tree(BEFORE, old)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    }
    env.update(
        DATABASE_URL=database,
        DEBUG="1",
        SECRET_KEY="upgrade-check",
        MEDIA_ROOT=str(tmp_path / "media"),
        AUDIT_CHECKPOINT_DIR=str(tmp_path / "checkpoints"),
    )
    _manage(old, "governance.settings", env, "migrate", "--no-input")
    _manage(old, "governance.settings", env, "load_demo")
    _manage(old, "governance.settings", env, "audit_checkpoint")
    before = _snapshot(old, "governance.settings", env)
    shutil.rmtree(old)  # from here on only the current code touches the database

    _manage(ROOT, "config.settings", env, "migrate", "--no-input")
    after = _snapshot(ROOT, "config.settings", env)
    verified = _manage(ROOT, "config.settings", env, "verify_audit")

    assert before["counts"]["governance_signature"] > 0
    assert before["counts"]["audits_auditevent"] > 100
    assert len(before["heads"]) == 6  # five projects and the global chain
    # Apps added since (django-axes) bring their own content types and permissions, and a
    # permission added to a role since (manage_incidents) is granted to the members who hold
    # it; nothing that existed may change.
    grown = {"auth_permission", "django_content_type", "governance_projectuserobjectpermission"}
    for table, count in before["counts"].items():
        if table in grown:
            assert after["counts"][table] >= count, table
        else:
            assert after["counts"].get(table) == count, table
    assert after["heads"] == before["heads"]
    assert before["valid"], "the demo has signatures that hold"
    assert after["valid"] == before["valid"]
    events = before["counts"]["audits_auditevent"]
    assert verified.startswith(f"OK: 6 chain(s), {events} event(s) verified; 6 chain(s) matched")
