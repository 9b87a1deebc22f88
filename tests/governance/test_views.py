"""The pages: only visible projects are listed; an outsider gets 404, never 403."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.phases import Phase
from tests.factories import PASSWORD, UserFactory, make_team

pytestmark = pytest.mark.django_db


def test_it_redirects_anonymous_users_to_login(client, team):
    response = client.get(team.project.get_absolute_url())
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_logs_a_user_in_with_the_login_form(client, team):
    user = team[Role.COMMITTEE_CHAIR]
    response = client.post(
        "/accounts/login/", {"username": user.username, "password": PASSWORD}, follow=True
    )
    assert response.status_code == 200
    assert team.project.name in response.content.decode()


def test_home_lists_only_projects_the_user_has_a_role_on(client):
    mine, theirs = make_team(), make_team()
    client.force_login(mine[Role.AUDITOR])
    page = client.get("/").content.decode()
    assert mine.project.name in page
    assert theirs.project.name not in page


def test_a_global_view_permission_shows_every_project(client):
    from django.contrib.auth.models import Permission

    first, second = make_team(), make_team()
    reviewer = UserFactory()
    reviewer.user_permissions.add(Permission.objects.get(codename="view_project"))
    client.force_login(reviewer)
    page = client.get("/").content.decode()
    assert first.project.name in page and second.project.name in page


def test_the_project_page_shows_gates_and_team_and_the_phase_page_its_checklist(client, team):
    client.force_login(team[Role.COMMITTEE_MEMBER])
    page = client.get(team.project.get_absolute_url()).content.decode()
    assert "Project definition and planning" in page
    assert "Locked" in page and "Open" in page
    assert team[Role.PRIVACY_OFFICER].get_full_name() in page
    phase = client.get(f"/projects/{team.project.slug}/phases/planning/").content.decode()
    assert team.project.checklist_items.first().title in phase


def test_an_outsider_gets_404_on_a_project_page(client, team):
    client.force_login(team.outsider)
    assert client.get(team.project.get_absolute_url()).status_code == 404
    assert client.get("/projects/no-such-project/").status_code == 404


def test_evidence_downloads_only_for_those_who_may_see_the_project(client, team):
    item = team.project.checklist_items.filter(phase=Phase.PLANNING).first()
    evidence = checklist_services.evidence_add_file(
        actor=team.creator, item=item, upload=SimpleUploadedFile("plan.txt", b"the plan")
    )
    url = f"/evidence/{evidence.pk}/download/"
    client.force_login(team.outsider)
    assert client.get(url).status_code == 404
    client.force_login(team[Role.AUDITOR])
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"the plan"
    assert response["X-Content-SHA256"] == evidence.sha256
    assert 'filename="plan.txt"' in response["Content-Disposition"]


def test_uploaded_files_are_not_served_from_media_url(client, team, settings):
    client.force_login(team.creator)
    assert client.get(f"/{settings.MEDIA_URL}evidence/").status_code == 404


def test_health_endpoint(client):
    assert client.get("/healthz/").json() == {"status": "ok"}
