"""Each page's SQL query count does not grow with projects, items, runs or events."""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.models import Project
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.selectors import active_template
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.gates.models import Gate, SignOffPolicy
from lifecycle.phases import Phase
from tests.factories import UserFactory, make_team, make_versions

pytestmark = pytest.mark.django_db


def queries(client, url: str) -> int:
    """Queries of a steady-state page view (a first view renews the idle session)."""
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def bulk_projects(owner, count: int, offset: int = 0) -> None:
    """Projects with their five gates, made directly: only their number matters here."""
    template, policy = active_template(), SignOffPolicy.objects.get()
    projects = Project.objects.bulk_create(
        Project(
            name=f"Bulk project {offset + i}",
            slug=f"bulk-{offset + i}",
            owner=owner,
            clinical_setting="Wards",
            intended_use="Use",
            intended_users="Nurses",
            task_category="clinical_documentation",
            risk_tier=("low", "medium", "high")[i % 3],
            current_phase=Phase.PLANNING,
            checklist_template=template,
            signoff_policy=policy,
        )
        for i in range(count)
    )
    Gate.objects.bulk_create(
        Gate(
            project=p,
            phase=phase,
            position=phase.number,
            state="open" if phase == "planning" else "locked",
        )
        for p in projects
        for phase in Phase
    )


def overseer():
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_project"))
    return user


def test_the_dashboard_with_1000_projects_needs_at_most_15_queries(client):
    team = make_team()
    user = overseer()
    bulk_projects(user, 1000)
    client.force_login(user)
    assert queries(client, "/") <= 15
    client.force_login(team[Role.COMMITTEE_CHAIR])
    assert queries(client, "/") <= 15


def test_the_dashboard_query_count_does_not_grow_with_projects(client):
    user = overseer()
    bulk_projects(user, 10)
    client.force_login(user)
    client.get("/")
    few = queries(client, "/")
    bulk_projects(user, 190, offset=10)
    assert queries(client, "/") == few


def grow(team, n: int) -> None:
    item = team.project.checklist_items.get(key="planning.data-privacy-plan")
    model, dataset = team.project.model_versions.first(), team.project.dataset_versions.first()
    if model is None:
        model, dataset = make_versions(team)
    gate = team.project.gates.get(phase="planning")
    for i in range(n):
        checklist_services.comment_add(actor=team.creator, item=item, body=f"Comment {i}")
        checklist_services.evidence_add_note(actor=team.creator, item=item, note=f"Note {i}")
    numbered = EvaluationRun.objects.filter(project=team.project).count()
    EvaluationRun.objects.bulk_create(
        EvaluationRun(
            project=team.project,
            number=numbered + i + 1,
            gate=gate,
            model_version=model,
            dataset_version=dataset,
            file="evaluations/x.jsonl",
            original_name="x.jsonl",
            size=1,
            sha256="d" * 64,
            status="succeeded",
            requested_by=team.creator,
            metrics=["auroc"],
        )
        for i in range(n)
    )


@pytest.mark.parametrize(
    "path",
    ["", "phases/planning/", "audit/"],
    ids=["overview", "phase", "audit"],
)
def test_project_pages_do_not_grow_with_objects(client, path):
    team = make_team()
    client.force_login(team.creator)
    url = f"/projects/{team.project.slug}/{path}"
    grow(team, 10)
    client.get(url)
    few = queries(client, url)
    grow(team, 190)
    assert queries(client, url) == few


def test_the_run_page_does_not_grow_with_results(client, in_process_tasks):
    from django.core.files.base import ContentFile

    from demo.records import binary_classifier
    from lifecycle.evaluations.tasks import run_evaluation

    team = make_team()
    client.force_login(team.creator)
    model, dataset = make_versions(team)

    def run_with(metrics):
        run = evaluation_services.evaluation_run_start(
            actor=team.creator,
            gate=team.project.gates.first(),
            model_version=model,
            dataset_version=dataset,
            upload=ContentFile(
                binary_classifier(seed=1, n=400, prevalence=0.3, separation=1.2), name="r.jsonl"
            ),
            metrics=metrics,
            resamples=50,
        )
        run_evaluation.apply(args=[run.pk])
        return f"/projects/{team.project.slug}/runs/{run.pk}/"

    small = queries(client, run_with(["auroc"]))
    large = queries(
        client,
        run_with(
            ["auroc", "recall", "precision", "f1", "ece", "accuracy", "specificity", "brier_score"]
        ),
    )
    assert large == small
