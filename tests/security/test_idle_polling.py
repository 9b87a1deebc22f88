"""Issue 11, item 11: a page's background refresh does not keep an idle session alive.

The run page of a queued or running run refreshes itself every few seconds. Those polls are
the browser's, not the user's: they must not renew the session, so a page left open still
times out; once it has, the poll sends the browser to the login page instead of swapping the
login form into the page (which would also poll for ever).
"""

import time
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.phases import Phase
from tests.factories import make_versions

pytestmark = pytest.mark.django_db

POLL = {"HX-Request": "true", "X-Background-Poll": "1"}
CLICK = {"HX-Request": "true"}


@pytest.fixture
def queued_run(team):
    """A run no worker has taken up yet (queued jobs run on commit, which these tests never
    reach): its page keeps polling."""
    model, dataset = make_versions(team, rows=50)
    return evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=Phase.PLANNING),
        model_version=model,
        dataset_version=dataset,
        upload=ContentFile(
            binary_classifier(seed=1, n=50, prevalence=0.3, separation=1.5), name="r.jsonl"
        ),
        metrics=["auroc"],
        resamples=10,
    )


@pytest.fixture
def idle_session(client, team, settings):
    """A signed-in user whose last activity was ten minutes ago, with 30 seconds of the idle
    timeout left."""
    settings.SESSION_COOKIE_AGE = 120
    client.force_login(team.creator)
    session = client.session
    session["seen"] = int(time.time()) - 600
    session.save()
    Session.objects.filter(session_key=session.session_key).update(
        expire_date=timezone.now() + timedelta(seconds=30)
    )
    return session.session_key


def expiry(session_key: str):
    return Session.objects.get(session_key=session_key).expire_date


def run_url(run) -> str:
    return reverse("run", args=[run.project.slug, run.pk])


def test_it_marks_the_run_pages_refresh_as_a_background_poll(client, team, queued_run):
    client.force_login(team.creator)
    page = client.get(run_url(queued_run)).content.decode()
    assert 'hx-trigger="every 3s"' in page
    assert """hx-headers='{"X-Background-Poll": "1"}'""" in page


def test_it_does_not_renew_an_idle_session_for_background_polls(
    client, idle_session, queued_run, settings
):
    assert not settings.SESSION_SAVE_EVERY_REQUEST  # Django would renew it on every request
    left = expiry(idle_session)
    for _ in range(3):
        response = client.get(run_url(queued_run), headers=POLL)
        assert response.status_code == 200
        assert "Waiting for a worker" in response.content.decode()
        assert settings.SESSION_COOKIE_NAME not in response.cookies  # nothing saved or renewed
    assert expiry(idle_session) == left

    # The 30 seconds pass with nothing but polls: the next poll goes to the login page.
    Session.objects.filter(session_key=idle_session).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    response = client.get(run_url(queued_run), headers=POLL)
    assert response.status_code == 204 and not response.content
    assert response["HX-Redirect"] == f"/accounts/login/?next={run_url(queued_run)}"


def test_a_click_renews_an_idle_session(client, idle_session, queued_run, settings):
    response = client.get(run_url(queued_run), headers=CLICK)
    assert response.status_code == 200
    assert settings.SESSION_COOKIE_NAME in response.cookies
    renewed = expiry(idle_session)
    assert renewed > timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE - 60)


def test_an_expired_session_sends_any_htmx_request_to_the_login_page(client, team, queued_run):
    client.force_login(team.creator)
    session = client.session
    session.set_expiry(-1)
    session.save()
    for headers in (POLL, CLICK):
        response = client.get(run_url(queued_run), headers=headers)
        # Not the login form swapped into the run page's card: the whole page goes to login.
        assert response.status_code == 204 and b"password" not in response.content
        assert response["HX-Redirect"].startswith("/accounts/login/?next=")
    plain = client.get(run_url(queued_run))
    assert plain.status_code == 302 and plain["Location"].startswith("/accounts/login/")
