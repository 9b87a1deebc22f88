"""The demo health system that `make run` loads."""

import pytest
from django.http import HttpRequest

from demo.health_system import DEMO_USERS, load_demo
from governance.models import Project, User
from lifecycle.checklists.models import Evidence
from lifecycle.gates.models import Gate

pytestmark = pytest.mark.django_db


def test_it_loads_five_projects_in_different_phases_idempotently():
    created = load_demo()
    assert len([c for c in created if c.startswith("project")]) == 5
    phases = set(Project.objects.values_list("current_phase", flat=True))
    assert len(phases) >= 4
    states = set(Gate.objects.values_list("state", flat=True))
    assert {"approved", "open", "in_review", "changes_requested", "locked"} <= states
    assert Evidence.objects.filter(kind="file").exists()
    assert load_demo() == []
    assert Project.objects.count() == 5


def test_every_demo_user_can_log_in_with_the_documented_password(client):
    load_demo()
    for username, *_ in DEMO_USERS:
        # The login lockout (django-axes) checks every authentication against its request.
        assert client.login(request=HttpRequest(), username=username, password="governance-demo"), (
            username
        )
    outsider = User.objects.get(username="outsider")
    client.force_login(outsider)
    assert client.get("/projects/ed-triage-assistant/").status_code == 404
