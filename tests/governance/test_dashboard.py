"""The dashboard, the account page and the idle timeout, as their users see them."""

import time

import pytest
from django.urls import reverse

from governance.models import ApiToken, RiskTier
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.gates import services as gate_services
from lifecycle.phases import Phase
from tests.factories import make_team, settle

pytestmark = pytest.mark.django_db


def test_the_chair_sees_the_gate_waiting_for_their_signature(client, team):
    settle(team, Phase.PLANNING)
    gate_services.gate_submit(actor=team.creator, gate=team.project.gates.get(phase=Phase.PLANNING))
    client.force_login(team[Role.COMMITTEE_CHAIR])
    page = client.get("/").content.decode()
    pending = page[page.index("Waiting for your signature") : page.index("Assigned to you")]
    assert f"{team.project.name} — Project definition and planning" in pending
    # The auditor signs nothing, so nothing waits for them.
    client.force_login(team[Role.AUDITOR])
    assert "Nothing needs your signature." in client.get("/").content.decode()


def test_items_assigned_to_me_are_listed(client, team):
    item = team.project.checklist_items.get(key="planning.data-privacy-plan")
    checklist_services.checklist_item_assign(
        actor=team.creator, item=item, assignee=team[Role.PRIVACY_OFFICER]
    )
    client.force_login(team[Role.PRIVACY_OFFICER])
    page = client.get("/").content.decode()
    assigned = page[page.index("Assigned to you") : page.index('id="projects-title"')]
    assert item.title in assigned


def test_each_project_shows_what_blocks_its_gate(client, team):
    client.force_login(team[Role.COMMITTEE_MEMBER])
    page = client.get("/").content.decode()
    row = page[page.index(team.project.name) :]
    row = row[: row.index("</tr>")]
    assert "Open" in row
    assert "required item" in row  # the planning items are not settled yet


def test_search_and_filters_narrow_the_project_list(client):
    high = make_team(name="Sepsis risk summariser", risk_tier=RiskTier.HIGH)
    low = make_team(name="Coding assistant", risk_tier=RiskTier.LOW)
    client.force_login(high.creator)
    for user in (low.creator,):
        # One viewer on both projects: the high-risk project's lead joins the other as auditor.
        from governance.services import membership_add

        membership_add(actor=user, project=low.project, user=high.creator, role=Role.AUDITOR)
    page = client.get("/", {"q": "sepsis"}).content.decode()
    assert "Sepsis risk summariser" in page and "Coding assistant" not in page
    page = client.get("/", {"risk_tier": RiskTier.LOW}).content.decode()
    assert "Coding assistant" in page and "Sepsis risk summariser" not in page
    page = client.get("/", {"q": "no such project"}).content.decode()
    assert "No project matches." in page


def test_projects_whose_monitoring_needs_attention_come_first_with_the_flag_in_words(client):
    """Alerts raised on a deployed project and a periodic review gone overdue on another put
    both above a quiet project that sorts first by name, each saying why in words."""
    import datetime

    from django.utils import timezone

    from governance.services import membership_add
    from lifecycle.monitoring.models import MonitoringPlan
    from tests.monitoring import classifier_records, deploy, send_batch

    quiet = make_team(name="Admissions letter drafter")
    alerting = make_team(name="Sepsis risk summariser")
    overdue = make_team(name="Radiology report helper")
    plan = deploy(alerting)
    for week in range(3):
        records = classifier_records(seed=50 + week, n=200, weak_group="65+", weakness=1.4)
        send_batch(alerting, plan, week, records)
    open_alerts = alerting.project.incidents.filter(source="alert", status="open").count()
    assert open_alerts == 1  # one open alert incident collects the alerts
    deploy(overdue)
    since = timezone.now() - datetime.timedelta(days=3)
    MonitoringPlan.objects.filter(project=overdue.project).update(review_due_at=since)
    viewer = quiet.creator
    for team in (alerting, overdue):
        membership_add(actor=team.creator, project=team.project, user=viewer, role=Role.AUDITOR)

    client.force_login(viewer)
    page = client.get("/").content.decode()
    # Needing attention first, then by name: "Radiology…", "Sepsis…", then "Admissions…".
    order = [page.index(t.project.name) for t in (overdue, alerting, quiet)]
    assert order == sorted(order)
    rows = {
        t.project.name: page[page.index(t.project.name) :].split("</tr>", 1)[0]
        for t in (alerting, overdue, quiet)
    }
    assert "⚠ 1 open alert" in rows[alerting.project.name]
    assert f"⚠ Periodic review overdue since {since:%Y-%m-%d}" in rows[overdue.project.name]
    assert "open alert" not in rows[overdue.project.name]
    assert "⚠" not in rows[quiet.project.name]


def test_a_new_token_is_shown_once_and_can_be_revoked(client, team):
    client.force_login(team.creator)
    response = client.post(
        reverse("account"), {"name": "CI pipeline", "expires_in_days": 30, "read_only": "on"}
    )
    page = response.content.decode()
    token = ApiToken.objects.get(user=team.creator)
    secret = page[page.index('id="new-token"') :].split(">", 1)[1].split("<", 1)[0]
    assert secret.startswith("lgv_") and token.read_only and token.expires_at
    assert secret not in client.get(reverse("account")).content.decode()  # shown once
    client.post(reverse("token-revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_a_token_form_error_is_shown_next_to_its_field(client, team):
    client.force_login(team.creator)
    response = client.post(reverse("account"), {"name": "", "expires_in_days": 0})
    page = response.content.decode()
    assert "This field is required." in page
    assert "greater than or equal to 1" in page
    assert not ApiToken.objects.exists()


def test_nobody_revokes_someone_elses_token(client, team):
    from governance.services import api_token_create

    token, _ = api_token_create(actor=team.creator, name="lead's")
    client.force_login(team[Role.COMMITTEE_CHAIR])
    assert client.post(reverse("token-revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_an_idle_session_expires_and_activity_keeps_it_alive(client, team, settings):
    client.force_login(team.creator)
    assert client.get("/").status_code == 200
    session = client.session
    assert session.get_expiry_age() <= settings.SESSION_COOKIE_AGE
    # Pretend the last activity was longer ago than the idle timeout.
    session.set_expiry(-1)
    session.save()
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_activity_renews_the_session_expiry(client, team, monkeypatch):
    client.force_login(team.creator)
    client.get("/")
    first = client.session.get_expiry_date()
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    client.get("/")
    assert client.session["seen"] == int(later)
    assert client.session.get_expiry_date() >= first
