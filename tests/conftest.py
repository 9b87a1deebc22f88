import os
import shutil

import pytest
from django.core.cache import cache
from django.db import connection

from tests.factories import Team, make_team


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness would dominate the suite; hashing is not under test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _plain_http_session(django_test_environment):
    """The live server (session-wide) serves plain http: no HTTPS redirect, no HSTS."""
    from django.conf import settings

    settings.SECURE_SSL_REDIRECT = False
    settings.SECURE_HSTS_SECONDS = 0


@pytest.fixture(autouse=True)
def _test_http(settings, tmp_path):
    # The suite runs with production settings (DEBUG off), minus HTTPS and collected assets,
    # which the test client and an uncollected checkout do not have.
    settings.SECURE_SSL_REDIRECT = False
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Uploaded evidence and audit checkpoints go to per-test directories, never into the
    working tree."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    yield
    shutil.rmtree(tmp_path / "media", ignore_errors=True)


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache: the audit timeline remembers the chain heads it
    verified, and ids are reused once a test's rows roll back."""
    cache.clear()


@pytest.fixture
def team(db) -> Team:
    return make_team()


def _require(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available.")
    pytest.skip(f"{what} not available")


@pytest.fixture
def live_db(transactional_db) -> None:
    """Committed transactions (for worker processes and threads). The flush after each such
    test empties every table, so the data the migrations seed is put back first."""
    import importlib

    from django.apps import apps

    for module, function in SEED_MIGRATIONS:
        getattr(importlib.import_module(module), function)(apps, None)


SEED_MIGRATIONS = [
    ("lifecycle.migrations.0002_checklist_template_v1", "load"),
    ("governance.migrations.0004_signoff_policy_v1", "seed"),
    ("audits.migrations.0002_append_only", "create_global_chain"),
]


@pytest.fixture
def in_process_tasks():
    """Run queued Celery tasks in-process for this test, whatever broker is configured."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def postgres(db) -> None:
    _require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/lifecycle/metrics/" in item.nodeid:
            item.add_marker(pytest.mark.engine)
        if "postgres" in item.fixturenames:
            item.add_marker(pytest.mark.postgres)
        if "celery_worker" in item.fixturenames or "redis_url" in item.fixturenames:
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    _require(bool(url), "Redis (REDIS_URL)")
    return url


@pytest.fixture(scope="session")
def celery_worker(redis_url, django_db_setup, tmp_path_factory):
    """A real worker process consuming from the test Redis, on the test database."""
    _require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    from tests.workers import WorkerProcess

    worker = WorkerProcess(redis_url, tmp_path_factory.mktemp("celery"))
    worker.start()
    yield worker
    worker.stop()


def _flush_past_append_only_triggers() -> None:
    """Transactional tests end by emptying every table, which the append-only triggers rightly
    refuse; the test database drops them for the flush and puts them straight back."""
    from django.db import connections
    from django.test import TransactionTestCase

    from audits.triggers import APPEND_ONLY_TABLES, install, uninstall

    original = TransactionTestCase._fixture_teardown

    def _fixture_teardown(self):
        for alias in self._databases_names(include_mirrors=False):
            for table in APPEND_ONLY_TABLES:
                uninstall(connections[alias], table)
        try:
            original(self)
        finally:
            for alias in self._databases_names(include_mirrors=False):
                for table in APPEND_ONLY_TABLES:
                    install(connections[alias], table)

    TransactionTestCase._fixture_teardown = _fixture_teardown


_flush_past_append_only_triggers()
