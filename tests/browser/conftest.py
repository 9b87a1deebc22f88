"""Browser tests: Playwright driving Debian's chromium against the live test server.

No browser is ever downloaded: the tests launch /usr/bin/chromium (CHROMIUM_PATH overrides),
which .ci/run installs. axe-core, vendored in tests/browser/vendor, checks every main page.
Screenshots of the main pages go to test-artifacts/screenshots/.
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/browser/" in item.nodeid:
            item.add_marker(pytest.mark.browser)


def _require_chromium() -> None:
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        return
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"chromium is required (REQUIRE_SERVICES=1) but {CHROMIUM} is missing")
    pytest.skip(f"{CHROMIUM} not installed")


@pytest.fixture
def page(live_server, live_db, settings, tmp_path, monkeypatch):
    """A fresh chromium per test, started after the database is ready and stopped before it
    is flushed: Playwright's sync API runs an event loop in the test thread while it lives,
    and Django refuses database calls from a thread with a running loop. The test's own
    (synchronous) database calls are allowed for that time only."""
    from playwright.sync_api import sync_playwright

    _require_chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, base_url=live_server.url
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
        browser.close()


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS.exists() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"Browser screenshots of the main pages: {SCREENSHOTS}")
