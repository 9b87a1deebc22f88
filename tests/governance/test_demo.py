"""The demo health system that `make run` loads."""

import datetime
import itertools

import pytest
from django.http import HttpRequest
from django.utils import timezone

from audits.models import AuditEvent
from demo.health_system import DEMO_USERS, load_demo
from demo.records import SHIFT_WEEK
from governance.models import Project, User
from lifecycle.checklists.models import Evidence
from lifecycle.gates.models import Gate
from lifecycle.monitoring.models import Feedback, Incident, MonitoringBatch, MonitoringSignal
from lifecycle.phases import Phase

pytestmark = pytest.mark.django_db


def test_it_loads_five_projects_in_different_phases_idempotently():
    created = load_demo()
    assert len([c for c in created if c.startswith("project")]) == 5
    phases = set(Project.objects.values_list("current_phase", flat=True))
    assert len(phases) >= 4
    states = set(Gate.objects.values_list("state", flat=True))
    assert {"approved", "open", "in_review", "changes_requested", "locked"} <= states
    assert Evidence.objects.filter(kind="file").exists()
    events = AuditEvent.objects.count()
    assert load_demo() == []
    assert Project.objects.count() == 5
    assert AuditEvent.objects.count() == events
    assert MonitoringBatch.objects.count() == 24


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


def _gates(slug: str) -> dict[str, Gate]:
    return {gate.phase: gate for gate in Gate.objects.filter(project__slug=slug)}


def test_the_sepsis_model_drifts_in_one_cohort_from_week_9_and_the_rules_catch_it():
    load_demo()
    sepsis = Project.objects.get(slug="sepsis-risk-summariser")
    batches = list(MonitoringBatch.objects.filter(project=sepsis).order_by("period_start"))
    assert [b.number for b in batches] == list(range(1, 13))
    assert all(b.status == "analysed" for b in batches)
    # Weekly periods, the last one ending on the Sunday before this week.
    assert all((b.period_end - b.period_start).days == 6 for b in batches)
    assert all(
        (later.period_start - b.period_start).days == 7 for b, later in itertools.pairwise(batches)
    )
    today = timezone.localdate()
    this_week = today - datetime.timedelta(days=today.weekday())
    assert batches[-1].period_end == this_week - datetime.timedelta(days=1)
    signalled = sorted(
        set(
            MonitoringSignal.objects.filter(batch__project=sepsis).values_list(
                "batch__number", flat=True
            )
        )
    )
    assert signalled == list(range(SHIFT_WEEK, 13))
    # The required criterion fails for the 65+ cohort alone: performance differing across
    # cohorts after go-live.
    required = MonitoringSignal.objects.filter(batch__project=sepsis, required=True)
    assert {(s.metric, s.group_attribute, s.group_value) for s in required} == {
        ("auroc", "age_band", "65+")
    }
    alert = Incident.objects.get(project=sepsis, batch__number=SHIFT_WEEK)
    assert (alert.source, alert.severity, alert.status) == ("alert", "serious", "investigating")
    assert alert.owner.username == "safety"
    assert Feedback.objects.filter(project=sepsis, source="clinician").exists()
    # The monitoring gate had been approved on the first weeks; the alert reopened it.
    gates = _gates(sepsis.slug)
    monitoring = gates[Phase.MONITORING]
    assert monitoring.state == Gate.State.OPEN and monitoring.cycle == 2
    assert "worst_group:auroc(age_band) >= 0.8" in monitoring.reopened_reason
    assert all(gates[p].state == Gate.State.APPROVED for p in Phase if p != Phase.MONITORING)


def test_the_ambient_scribe_is_deployed_and_stays_quiet():
    load_demo()
    scribe = Project.objects.get(slug="ambient-scribe")
    gates = _gates(scribe.slug)
    assert all(gates[p].state == Gate.State.APPROVED for p in Phase if p != Phase.MONITORING)
    assert gates[Phase.MONITORING].state == Gate.State.OPEN
    assert scribe.current_phase == Phase.MONITORING
    assert MonitoringBatch.objects.filter(project=scribe, status="analysed").count() == 12
    assert not MonitoringSignal.objects.filter(batch__project=scribe).exists()
    assert not Incident.objects.filter(project=scribe).exists()
