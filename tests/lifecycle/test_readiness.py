"""What blocks a gate: one answer (`lifecycle.gates.readiness`) on every page and in the API.

On the demo health system, the dashboard, the project overview, the phase page and the API
must say the same thing about every gate, and say it right where the first version did not
(a gate with changes requested is blocked; a criterion without data is not "failing").
"""

import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from demo.health_system import load_demo
from governance.models import Project, User
from lifecycle.gates.models import Gate, GateState
from lifecycle.gates.readiness import gate_readiness, readiness_of
from tests.api.helpers import client_for

pytestmark = pytest.mark.django_db


def blockers_on(page: str) -> dict[int, list[str]]:
    """Every blocker list on a page, by gate id (`<ul class="… blockers" data-gate="…">`)."""
    found = {}
    for gate_id, body in re.findall(
        r'<ul class="[^"]*\bblockers\b[^"]*" data-gate="(\d+)"[^>]*>(.*?)</ul>', page, re.S
    ):
        found[int(gate_id)] = [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", body)]
    return found


@pytest.fixture
def demo(client):
    load_demo()
    chair = User.objects.get(username="chair")
    client.force_login(chair)
    return chair


def test_dashboard_overview_phase_page_and_api_agree_on_every_demo_gate(client, demo):
    gates = list(Gate.objects.select_related("project").order_by("project__name", "position"))
    expected = gate_readiness(gates)
    dashboard = blockers_on(client.get("/").content.decode())
    api = client_for(demo)
    for project in Project.objects.all():
        overview = blockers_on(client.get(f"/projects/{project.slug}/").content.decode())
        current = project.gates.get(phase=project.current_phase)
        # The dashboard shows the current gate of each project, as the overview does.
        assert dashboard.get(current.pk, []) == overview.get(current.pk, [])
        for gate in project.gates.all():
            answer = expected[gate.pk]
            assert overview.get(gate.pk, []) == answer.blockers, (project.slug, gate.phase)
            phase_page = client.get(f"/projects/{project.slug}/phases/{gate.phase}/")
            assert blockers_on(phase_page.content.decode()).get(gate.pk, []) == answer.blockers
            body = api.get(f"/api/v1/projects/{project.slug}/gates/{gate.phase}/").json()
            conditions = body["conditions"]
            assert conditions["can_be_approved"] == answer.can_be_approved
            assert conditions["missing_roles"] == answer.missing_roles
            assert [i["key"] for i in conditions["items_missing"]] == [
                i.key for i in answer.blocking_items
            ]
            assert [c["verdict"] for c in conditions["criteria"]] == [
                v.status for v in answer.verdicts
            ]


def test_the_demo_blockers_say_what_a_committee_needs_to_hear(client, demo):
    icd = Project.objects.get(slug="icd10-coding-assistant")
    data_gate = icd.gates.get(phase="data")
    assert data_gate.state == GateState.CHANGES_REQUESTED
    blockers = readiness_of(data_gate).blockers
    assert blockers[0].startswith("changes requested")
    row = blockers_on(client.get("/").content.decode())[data_gate.pk]
    assert row == blockers
    locked = icd.gates.get(phase="deployment")
    assert readiness_of(locked).blockers == [
        "locked: the Model development and validation gate is not approved yet"
    ]
    for gate in Gate.objects.all():
        for verdict, sentence in (
            ("fail", "criterion fails: "),
            ("no data", "criterion has no data: "),
        ):
            answer = readiness_of(gate)
            failing = [v for v in answer.failing_criteria if v.status == verdict]
            if gate.state != GateState.APPROVED:
                assert [b for b in answer.blockers if b.startswith(sentence)] == [
                    sentence + v.criterion.expression for v in failing
                ]
    approved = Gate.objects.filter(state=GateState.APPROVED).first()
    assert readiness_of(approved).blockers == []


def test_readiness_of_many_gates_costs_a_fixed_number_of_queries(demo):
    # One project whose gates have every kind of condition (approvals, runs, criteria), then
    # every gate of the five projects: the same queries, however many gates.
    sepsis = list(Gate.objects.filter(project__slug="sepsis-risk-summariser"))
    every = list(Gate.objects.all())
    with CaptureQueriesContext(connection) as one_project:
        gate_readiness(sepsis)
    with CaptureQueriesContext(connection) as all_projects:
        gate_readiness(every)
    assert len(every) == 25
    assert len(all_projects) == len(one_project) <= 9
