"""HTTP-level hardening (issue 11): NUL bytes in input, evidence downloads, caching of signed-in
answers, the HTTPS proxy header, and access to the API schema and its documentation."""

import runpy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.phases import Phase
from tests.api.helpers import client_for

pytestmark = pytest.mark.django_db

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "config" / "settings.py"
ITEM = "planning.data-privacy-plan"


@pytest.fixture(params=["default", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request) -> str:
    """Each NUL test runs on the database of the pass (SQLite or PostgreSQL), and once more
    explicitly required to be PostgreSQL, where a NUL used to reach the query and fail."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres")
    return request.param


# --- NUL in query parameters and form fields --------------------------------------------------

PAGE_FILTERS = [
    ("home", "q"),
    ("home", "current_phase"),
    ("home", "state"),
    ("home", "risk_tier"),
    ("home", "task_category"),
    ("home", "page"),
    ("audit-timeline", "target_type"),
    ("phase", "anything"),
]


def _page(name: str, team) -> str:
    if name == "home":
        return "/"
    if name == "phase":
        return reverse("phase", args=[team.project.slug, Phase.PLANNING])
    return reverse(name, args=[team.project.slug])


@pytest.mark.parametrize(("page", "parameter"), PAGE_FILTERS)
def test_it_refuses_a_nul_in_a_page_filter_with_a_400_naming_it(
    client, team, database, page, parameter
):
    client.force_login(team[Role.AUDITOR])
    response = client.get(_page(page, team), {parameter: "sepsis\x00"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert f"The query parameter “{parameter}” contains a NUL character (%00)" in body


def test_it_refuses_a_percent_encoded_nul_in_the_raw_query_string(client, team, database):
    client.force_login(team.creator)
    response = client.get("/?q=%00&risk_tier=high")
    assert response.status_code == 400
    assert "The query parameter “q” contains a NUL character" in response.content.decode()
    # In the parameter's name too; the name is shown as it was sent, and escaped.
    response = client.get("/?%3Cb%3E%00=1")
    assert response.status_code == 400
    assert "The query parameter “&lt;b&gt;%00”" in response.content.decode()


def test_a_clean_query_still_works(client, team, database):
    client.force_login(team.creator)
    response = client.get("/", {"q": team.project.name[:10]})
    assert response.status_code == 200 and team.project.name in response.content.decode()


API_FILTERS = [
    ("items/", "search"),
    ("items/", "assignee"),
    ("items/", "status"),
    ("evaluation-runs/", "model_version"),
    ("audit-events/", "target_type"),
    ("audit-events/", "actor"),
]


@pytest.mark.parametrize(("endpoint", "parameter"), API_FILTERS)
def test_it_refuses_a_nul_in_an_api_filter_with_the_api_error_body(
    team, database, endpoint, parameter
):
    api = client_for(team[Role.AUDITOR])
    url = f"/api/v1/projects/{team.project.slug}/{endpoint}"
    response = api.get(url, {parameter: "x\x00"})
    assert response.status_code == 400
    message = (
        f"The query parameter “{parameter}” contains a NUL character (%00), which is not allowed."
    )
    assert response.json() == {
        "error": {
            "status": 400,
            "code": "invalid",
            "message": message,
            "fields": {parameter: [message]},
        }
    }


def test_it_refuses_a_nul_in_a_form_field(client, team, database):
    client.force_login(team.creator)
    url = reverse("item-comment", args=[team.project.slug, ITEM])
    # As a browser posts a form without files.
    form = urlencode({"body": "Looks fine.\x00<script>"})
    response = client.post(url, form, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "The form field “body” contains a NUL character" in response.content.decode()
    assert not team.project.checklist_items.get(key=ITEM).comments.exists()


def test_an_address_with_a_nul_is_not_found(client, team, database):
    client.force_login(team.creator)
    assert client.get(f"/projects/{team.project.slug}/items/a%00b/status/").status_code == 404
    assert client.get(f"/projects/{team.project.slug}/phases/%00/").status_code == 404
    api = client_for(team.creator)
    response = api.get(f"/api/v1/projects/{team.project.slug}/items/a%00b/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


# --- Evidence downloads -----------------------------------------------------------------------

DOWNLOAD_TYPES = [
    ("dpia.pdf", "application/pdf"),
    ("scan.png", "image/png"),
    ("photo.JPG", "image/jpeg"),
    ("notes.txt", "text/plain"),
    ("groups.csv", "text/csv"),
    ("report.html", "application/octet-stream"),
    ("page.htm", "application/octet-stream"),
    ("chart.svg", "application/octet-stream"),
    ("feed.xml", "application/octet-stream"),
    ("tool.js", "application/octet-stream"),
    ("notes.txt.gz", "application/octet-stream"),
    ("README", "application/octet-stream"),
]


def _evidence(team, name: str, content: bytes = b"<script>alert(1)</script>"):
    item = team.project.checklist_items.get(key=ITEM)
    return checklist_services.evidence_add_file(
        actor=team.creator, item=item, upload=SimpleUploadedFile(name, content)
    )


def _download(team, evidence, via: str):
    if via == "page":
        client = Client()
        client.force_login(team[Role.AUDITOR])
        return client.get(reverse("evidence-download", args=[evidence.pk]))
    url = f"/api/v1/projects/{team.project.slug}/evidence/{evidence.pk}/download/"
    return client_for(team[Role.AUDITOR]).get(url)


def _filename(disposition: str) -> str | None:
    # Parsed as a mail client parses it (RFC 2231/6266, quoted strings and `filename*`).
    message = EmailMessage()
    message["Content-Disposition"] = disposition
    return message.get_filename()


@pytest.mark.parametrize("via", ["page", "api"])
@pytest.mark.parametrize(("name", "content_type"), DOWNLOAD_TYPES)
def test_evidence_downloads_are_attachments_of_a_safe_type(team, via, name, content_type):
    response = _download(team, _evidence(team, name), via)
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"].startswith("attachment;")
    assert _filename(response["Content-Disposition"]) == name
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert b"".join(response.streaming_content) == b"<script>alert(1)</script>"


@pytest.mark.parametrize("via", ["page", "api"])
@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ('a"; filename="evil.html', "application/octet-stream"),
        ("<img src=x onerror=alert(1)>.pdf", "application/pdf"),
        ("back\\slash.txt", "text/plain"),
        ("résumé “final”.pdf", "application/pdf"),
        ("line\r\nX-Injected: 1.txt", "text/plain"),
    ],
)
def test_a_hostile_file_name_cannot_break_the_download_header(team, via, name, content_type):
    response = _download(team, _evidence(team, name), via)
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert "X-Injected" not in response
    assert disposition.startswith("attachment;")
    assert _filename(disposition) == name
    assert response["Content-Type"] == content_type
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


# --- Cache-Control on authenticated answers ---------------------------------------------------


def _directives(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",")}


def test_signed_in_pages_are_not_cached(client, team):
    client.force_login(team.creator)
    for url in ("/", team.project.get_absolute_url(), reverse("account")):
        response = client.get(url)
        assert response.status_code == 200
        assert {"private", "no-store"} <= _directives(response), url


def test_api_answers_to_a_token_are_not_cached(team):
    response = client_for(team.creator).get("/api/v1/projects/")
    assert response.status_code == 200
    assert {"private", "no-store"} <= _directives(response)


@pytest.mark.parametrize("via", ["page", "api"])
def test_evidence_downloads_are_not_cached(team, via):
    response = _download(team, _evidence(team, "dpia.pdf"), via)
    assert {"private", "no-store"} <= _directives(response)


def test_a_stricter_cache_header_set_by_a_view_is_kept(client, team):
    # The login view is never_cache: its own directives stay, merged with ours.
    client.force_login(team.creator)
    response = client.get(reverse("login"))
    assert {"private", "no-store", "no-cache", "must-revalidate", "max-age=0"} <= _directives(
        response
    )


def test_anonymous_answers_are_left_alone(client):
    response = client.get("/api/v1/projects/")
    assert response.status_code == 401 and "no-store" not in _directives(response)


# --- The HTTPS proxy header -------------------------------------------------------------------


def _production_settings(monkeypatch, **env: str) -> dict:
    """config/settings.py as production loads it, with this environment."""
    monkeypatch.setenv("DEBUG", "0")
    monkeypatch.setenv("SECRET_KEY", "a-production-secret-for-this-test-" + "x" * 20)
    monkeypatch.delenv("SECURE_PROXY_SSL_HEADER", raising=False)
    monkeypatch.delenv("SECURE_SSL_REDIRECT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def _get_claiming_https(settings, production: dict):
    settings.SECURE_SSL_REDIRECT = production["SECURE_SSL_REDIRECT"]
    settings.SECURE_PROXY_SSL_HEADER = production["SECURE_PROXY_SSL_HEADER"]
    return Client().get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})


def test_a_client_sent_forwarded_proto_does_not_skip_the_https_redirect(settings, monkeypatch):
    production = _production_settings(monkeypatch)
    assert production["SECURE_PROXY_SSL_HEADER"] is None
    response = _get_claiming_https(settings, production)
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/accounts/login/"


def test_behind_a_declared_proxy_its_header_is_trusted(settings, monkeypatch):
    production = _production_settings(monkeypatch, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert production["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert _get_claiming_https(settings, production).status_code == 200


def test_a_malformed_proxy_header_name_stops_start_up(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="SECURE_PROXY_SSL_HEADER must be a header"):
        _production_settings(monkeypatch, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https")


# --- API schema and documentation -------------------------------------------------------------


def test_the_api_schema_needs_a_login(client, team):
    response = client.get("/api/schema/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    api = client_for(team[Role.AUDITOR], read_only=True)
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200 and "/api/v1/projects/" in response.json()["paths"]
    client.force_login(team[Role.AUDITOR])
    assert client.get("/api/schema/").status_code == 200


def test_the_api_docs_page_sends_an_anonymous_browser_to_log_in(client, team):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/api/docs/"
    client.force_login(team[Role.AUDITOR])
    page = client.get("/api/docs/")
    assert page.status_code == 200 and 'id="swagger-ui"' in page.content.decode()
    # Its start-up script is a file of its own (no inline script), behind the same login.
    assert client.get("/api/docs/?script=").status_code == 200
    assert Client().get("/api/docs/?script=").status_code == 302


def test_a_setting_opens_the_schema_and_docs_to_anyone(client, settings):
    settings.API_DOCS_PUBLIC = True
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
