"""Stored XSS through an uploaded evaluation file, and the Content-Security-Policy that forbids
inline script on every response (issue 11, item 1)."""

import json
import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile

from governance import services as governance_services
from governance import totp
from governance.models import User
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.charts import interval_bars
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import SignOffPolicy
from lifecycle.phases import Phase
from tests.api.helpers import client_for
from tests.factories import make_versions, rows_of

pytestmark = pytest.mark.django_db

HOSTILE_ATTRIBUTE = 'sex" onload="alert(1)'
HOSTILE_VALUE = "<script>alert(2)</script>"
DERIVED_ID = re.compile(r"^chart-[0-9a-f]{12}(-title|-desc)?$")


class Markup(HTMLParser):
    """Every start tag with its attributes, and the page's text, as a browser tokenises them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)

    def handlers(self) -> list[str]:
        return [f"<{t} {a}=…>" for t, attrs in self.tags for a in attrs if a.startswith("on")]

    def inline_scripts(self) -> list[dict]:
        return [attrs for tag, attrs in self.tags if tag == "script" and not attrs.get("src")]

    def style_attributes(self) -> list[str]:
        return [f"<{t} style={a['style']!r}>" for t, a in self.tags if "style" in a]


def hostile_records(n: int = 120) -> bytes:
    """A valid binary-classification file whose group attribute and values carry markup."""
    lines = []
    for i in range(n):
        label = i % 3 == 0
        score = 0.8 if label else 0.2
        if i % 5 == 0:
            score = 1 - score
        lines.append(
            {
                "id": f"r{i}",
                "label": int(label),
                "score": score,
                "prediction": int(score >= 0.5),
                "groups": {HOSTILE_ATTRIBUTE: HOSTILE_VALUE if i % 2 else "F"},
            }
        )
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture
def hostile_run(team):
    model, dataset = make_versions(team, rows=rows_of(hostile_records()))
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=Phase.PLANNING),
        model_version=model,
        dataset_version=dataset,
        upload=ContentFile(hostile_records(), name="records.jsonl"),
        metrics=["recall", "auroc", "ece", "confusion_matrix", "demographic_parity_difference"],
        resamples=50,
    )
    assert run_evaluation.apply(args=[run.pk]).get() == "succeeded"
    return run


def test_a_hostile_group_attribute_shows_as_text_on_the_run_page(client, team, hostile_run):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    response = client.get(f"/projects/{team.project.slug}/runs/{hostile_run.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    page = Markup(html)
    # The subgroup charts were drawn (so the hostile text went through the renderer) ...
    assert f"recall by {HOSTILE_ATTRIBUTE}" in "".join(page.text)
    assert f"{HOSTILE_ATTRIBUTE} = {HOSTILE_VALUE}" in "".join(page.text)
    # ... and it is only text: no handler attribute, no script element, no raw tag.
    assert page.handlers() == []
    assert page.inline_scripts() == []
    assert HOSTILE_VALUE not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    svg_tags = [(t, a) for t, a in page.tags if t == "svg"]
    assert svg_tags, "the run page draws its charts"
    for tag, attrs in page.tags:
        if "id" in attrs and (tag in ("figure", "title", "desc")):
            assert DERIVED_ID.match(attrs["id"] or ""), attrs["id"]
    for _, attrs in svg_tags:
        for ident in (attrs["aria-labelledby"] or "").split():
            assert DERIVED_ID.match(ident), ident


def test_chart_ids_are_derived_from_the_slug_never_copied():
    chart = interval_bars(
        f"groups-recall-{HOSTILE_ATTRIBUTE}",
        "t",
        "d",
        [(HOSTILE_VALUE, 0.5, 0.4, 0.6, "")],
    )
    assert DERIVED_ID.match(chart.dom_id)
    assert HOSTILE_ATTRIBUTE not in chart.svg and "onload=" not in chart.svg
    assert "&lt;script&gt;" in chart.svg and HOSTILE_VALUE not in chart.svg


def directives(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    policy = {}
    for part in header.split(";"):
        name, *values = part.split()
        policy[name] = values
    return policy


def assert_strict(response) -> None:
    policy = directives(response)
    assert policy["script-src"] == ["'self'"], policy
    assert policy["style-src"] == ["'self'"], policy
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert set(policy["img-src"]) == {"'self'", "data:"}
    assert not any("unsafe" in v for values in policy.values() for v in values)


def test_the_login_page_is_served_with_a_strict_policy(client):
    assert_strict(client.get("/accounts/login/"))


def test_the_run_page_is_served_with_a_strict_policy(client, team, hostile_run):
    client.force_login(team[Role.COMMITTEE_CHAIR])
    assert_strict(client.get(f"/projects/{team.project.slug}/runs/{hostile_run.pk}/"))


def test_the_admin_is_served_with_a_strict_policy(client, team):
    lead = team.creator
    lead.is_staff = True
    lead.save()
    client.force_login(lead)
    assert_strict(client.get("/admin/"))
    assert_strict(client.get("/admin/governance/project/"))


def test_api_responses_carry_the_policy(team):
    response = client_for(team[Role.AUDITOR]).get("/api/v1/projects/")
    assert response.status_code == 200
    assert_strict(response)


def test_the_api_docs_need_no_inline_script(client, team):
    client.force_login(team[Role.AUDITOR])
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert_strict(response)
    page = Markup(response.content.decode())
    assert page.inline_scripts() == []
    assert page.style_attributes() == []
    assert not [t for t, _ in page.tags if t == "style"], "inline <style> block"
    # Its start-up script is a file of its own, the one the page loads.
    sources = [a["src"] for t, a in page.tags if t == "script"]
    script = client.get(sources[-1])
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def page_urls(team, run) -> list[str]:
    slug = team.project.slug
    policies = [f"/policies/{v}/" for v in SignOffPolicy.objects.values_list("version", flat=True)]
    return [
        "/",
        f"/projects/{slug}/",
        f"/projects/{slug}/phases/planning/",
        f"/projects/{slug}/gates/planning/criteria/",
        f"/projects/{slug}/runs/{run.pk}/",
        f"/projects/{slug}/audit/",
        "/policies/",
        *policies,
        "/account/",
        "/account/notifications/",
        "/admin/",
        "/admin/governance/project/",
        f"/admin/governance/project/{team.project.pk}/change/",
        "/admin/lifecycle/evaluationrun/add/",
    ]


def test_no_page_has_inline_script_handlers_or_style_attributes(client, team, hostile_run):
    lead = team.creator
    lead.is_staff = True
    lead.save()
    # Every form shows: the criteria editor (chair), a draft policy's editor, the app being set
    # up on the account page.
    governance_services.membership_add(
        actor=lead, project=team.project, user=lead, role=Role.COMMITTEE_CHAIR
    )
    lead.user_permissions.add(Permission.objects.get(codename="change_signoffpolicy"))
    lead = User.objects.get(pk=lead.pk)  # no stale permission cache
    gate_services.signoff_policy_create_version(
        actor=lead, source=SignOffPolicy.objects.get(is_active=True), version="draft"
    )
    totp.enrolment_start(actor=lead)
    client.force_login(lead)
    for url in page_urls(team, hostile_run):
        response = client.get(url)
        assert response.status_code == 200, url
        page = Markup(response.content.decode())
        assert page.inline_scripts() == [], url
        assert page.handlers() == [], url
        assert page.style_attributes() == [], url
        assert not [a for _, a in page.tags if (a.get("href") or "").startswith("javascript:")]
        # htmx takes its settings from app.js, not from markup it would parse.
        assert not [a for t, a in page.tags if t == "meta" and a.get("name") == "htmx-config"]
    client.logout()
    page = Markup(client.get("/accounts/login/").content.decode())
    assert page.inline_scripts() == [] and page.style_attributes() == []
