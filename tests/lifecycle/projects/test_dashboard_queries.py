"""The dashboard's queries do not grow with the projects a user has a role on, and the gates it
lists as waiting for a signature are those `gate_readiness` says need one of the user's roles.

Personas as in `tests.factories`: a project lead registers every project; a committee chair and
a committee member hold their role on each; a compliance officer and a clinical lead sign only
some tiers of planning gates (the default sign-off policy).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance import services as governance_services
from governance.models import Membership, Project, RiskTier, User
from governance.roles import Role
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate, GateState, Signature, SignatureMeaning
from lifecycle.gates.readiness import gate_readiness
from lifecycle.phases import Phase
from lifecycle.projects.dashboard import pending_signoffs
from tests.factories import Team, UserFactory, make_project, project_creator, settle, sign

pytestmark = pytest.mark.django_db

TIERS = (RiskTier.LOW, RiskTier.MEDIUM, RiskTier.HIGH)
PERSONAS = (
    Role.COMMITTEE_CHAIR,
    Role.COMMITTEE_MEMBER,
    Role.COMPLIANCE_OFFICER,
    Role.CLINICAL_LEAD,
)


@pytest.fixture
def people() -> Team:
    """The lead who registers the projects, and one user per persona (no project yet)."""
    team = Team(project=None, creator=project_creator())  # type: ignore[arg-type]
    for role in PERSONAS:
        team.members[role] = UserFactory(username=f"{role}-dashboard")
    return team


def projects_in_review(people: Team, count: int) -> list[Project]:
    """`count` more projects (low, medium, high risk in turn), each persona holding its role,
    the planning gate submitted."""
    made = []
    for i in range(count):
        project = make_project(people.creator, risk_tier=TIERS[i % len(TIERS)])
        for role, user in people.members.items():
            governance_services.membership_add(
                actor=people.creator, project=project, user=user, role=role
            )
        team = Team(project=project, creator=people.creator, members=people.members)
        settle(team, Phase.PLANNING)
        gate_services.gate_submit(
            actor=people.creator, gate=project.gates.get(phase=Phase.PLANNING)
        )
        made.append(project)
    return made


def dashboard_queries(client, user: User) -> int:
    """Queries of a steady-state dashboard view (a first view renews the idle session)."""
    client.force_login(user)
    client.get("/")
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/")
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("role", [Role.COMMITTEE_MEMBER, Role.COMMITTEE_CHAIR])
def test_the_dashboard_costs_the_same_queries_for_n_and_3n_projects(client, people, role):
    user = people[role]
    projects_in_review(people, 2)
    few = dashboard_queries(client, user)
    projects_in_review(people, 4)
    assert dashboard_queries(client, user) == few
    # What grew is the list, not the queries: the chair signs every planning gate, the
    # committee member none.
    expected = 6 if role == Role.COMMITTEE_CHAIR else 0
    assert len(pending_signoffs(user)) == expected


def test_pending_signoffs_is_one_query_with_no_list_of_ids(people):
    chair = people[Role.COMMITTEE_CHAIR]
    projects_in_review(people, 2)
    with CaptureQueriesContext(connection) as few:
        assert len(pending_signoffs(chair)) == 2
    projects_in_review(people, 4)
    with CaptureQueriesContext(connection) as many:
        assert len(pending_signoffs(chair)) == 6
    # The same statement, word for word: no id of a project or a gate is sent back to the
    # database, so nothing in it grows with the projects.
    assert len(few) == len(many) == 1
    assert few[0]["sql"] == many[0]["sql"]


def waiting_by_readiness(user: User) -> set[int]:
    """The rule as `gate_readiness` states it: gates in review on the user's projects that
    require a role they hold, without their approval or rejection in the current round."""
    held: dict[int, set[str]] = {}
    for project_id, role in Membership.objects.filter(user=user).values_list("project", "role"):
        held.setdefault(project_id, set()).add(role)
    gates = list(Gate.objects.filter(project__in=held, state=GateState.IN_REVIEW))
    decided = set(
        Signature.objects.filter(
            signer=user, meaning__in=[SignatureMeaning.APPROVE, SignatureMeaning.REJECT]
        ).values_list("gate", "review_round")
    )
    readiness = gate_readiness(gates)
    return {
        gate.pk
        for gate in gates
        if set(readiness[gate.pk].required_roles) & held[gate.project_id]
        and (gate.pk, gate.review_round) not in decided
    }


def test_the_gates_waiting_are_those_gate_readiness_requires_the_user_for(people):
    # Tiers: low, medium, high, then low (approved), medium (reviewed), high (resubmitted).
    low, medium, high, approved, reviewed, resubmitted = projects_in_review(people, 6)

    def team(project: Project) -> Team:
        return Team(project=project, creator=people.creator, members=people.members)

    def planning(project: Project) -> Gate:
        return project.gates.get(phase=Phase.PLANNING)

    # Approved by the chair in this round: no longer waiting for them, still for the others.
    sign(team(approved), planning(approved), Role.COMMITTEE_CHAIR)
    # Only "reviewed": the approval is still the chair's to give.
    sign(team(reviewed), planning(reviewed), Role.COMMITTEE_CHAIR, meaning=SignatureMeaning.REVIEW)
    # Approved in round 1, sent back by a rejection and resubmitted: round 2 waits again.
    sign(team(resubmitted), planning(resubmitted), Role.COMMITTEE_CHAIR)
    sign(team(resubmitted), planning(resubmitted), Role.CLINICAL_LEAD, meaning="reject")
    assert planning(resubmitted).state == GateState.CHANGES_REQUESTED
    gate_services.gate_submit(actor=people.creator, gate=planning(resubmitted))
    assert planning(resubmitted).review_round == 2

    waiting = {role: {g.pk for g in pending_signoffs(people[role])} for role in PERSONAS}
    for role in PERSONAS:
        assert waiting[role] == waiting_by_readiness(people[role]), role

    def gates(*projects: Project) -> set[int]:
        return {planning(p).pk for p in projects}

    assert waiting[Role.COMMITTEE_CHAIR] == gates(low, medium, high, reviewed, resubmitted)
    # The tier decides (the default policy): compliance signs high-risk planning gates, the
    # clinical lead medium and high ones; their rejection of round 1 does not count in round 2.
    assert waiting[Role.COMPLIANCE_OFFICER] == gates(high, resubmitted)
    assert waiting[Role.CLINICAL_LEAD] == gates(medium, high, reviewed, resubmitted)
    assert waiting[Role.COMMITTEE_MEMBER] == set()
