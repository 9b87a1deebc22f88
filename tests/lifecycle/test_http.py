"""`lifecycle.http.post_only`: a GET of a form's POST-only URL goes to the page the form lives
on instead of a blank 405; the ready-made destinations name the right page."""

import pytest
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import resolve, reverse

from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.http import evidence_of, item_of, phase_of, post_only

pytestmark = pytest.mark.django_db


@post_only(back=lambda request, slug, phase: f"/projects/{slug}/phases/{phase}/")
def sign(request, slug, phase):
    """A stand-in form endpoint."""
    return HttpResponse(f"signed {slug} {phase}")


def test_it_lets_a_post_through():
    response = sign(RequestFactory().post("/x/"), slug="p", phase="planning")
    assert response.status_code == 200 and response.content == b"signed p planning"


@pytest.mark.parametrize("method", ["get", "head"])
def test_it_sends_a_get_or_head_to_the_page_of_the_form(method):
    response = sign(getattr(RequestFactory(), method)("/x/"), slug="p", phase="planning")
    assert response.status_code == 303
    assert response["Location"] == "/projects/p/phases/planning/"


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_still_not_allowed(method):
    response = sign(getattr(RequestFactory(), method)("/x/"), slug="p", phase="planning")
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_it_keeps_the_view_name_and_docstring():
    assert sign.__name__ == "sign" and sign.__doc__ == "A stand-in form endpoint."


def request_by(user):
    request = RequestFactory().get("/x/")
    request.user = user
    return request


def test_phase_of_names_the_phase_page(team):
    slug = team.project.slug
    url = phase_of(request_by(team.creator), slug=slug, phase="data")
    assert url == reverse("phase", args=[slug, "data"])


def test_item_of_names_the_items_card_for_someone_who_may_see_it(team):
    item = team.project.checklist_items.filter(phase="development").first()
    slug = team.project.slug
    url = item_of(request_by(team[Role.COMMITTEE_MEMBER]), slug=slug, key=item.key)
    assert url == reverse("phase", args=[slug, "development"]) + f"#item-{item.key}"
    # An outsider learns nothing about the item: the project page, which answers them 404.
    assert item_of(request_by(team.outsider), slug=slug, key=item.key) == reverse(
        "project-detail", args=[slug]
    )
    assert item_of(request_by(team.creator), slug=slug, key="no.such-item") == reverse(
        "project-detail", args=[slug]
    )


def test_evidence_of_names_the_card_of_its_item(team):
    item = team.project.checklist_items.filter(phase="planning").first()
    evidence = checklist_services.evidence_add_note(actor=team.creator, item=item, note="DPIA.")
    slug = team.project.slug
    url = evidence_of(request_by(team.creator), slug=slug, pk=evidence.pk)
    assert url == reverse("phase", args=[slug, "planning"]) + f"#item-{item.key}"
    assert evidence_of(request_by(team.outsider), slug=slug, pk=evidence.pk) == reverse(
        "project-detail", args=[slug]
    )


def test_a_get_of_the_sign_url_lands_on_a_page_that_opens(client, team):
    # The sign URL's own arguments, as Django's resolver passes them to the view.
    match = resolve(reverse("gate-sign", args=[team.project.slug, "planning"]))
    view = post_only(back=phase_of)(lambda request, **kwargs: HttpResponse(status=204))
    response = view(request_by(team.creator), *match.args, **match.kwargs)
    assert response.status_code == 303
    client.force_login(team.creator)
    assert client.get(response["Location"]).status_code == 200


def test_a_page_with_a_canonical_url_carries_it_for_app_js(team):
    # templates/base.html puts it on <body>; static/js/app.js replaces the address with it.
    request = request_by(team.creator)
    page = render_to_string("base.html", {"canonical_url": '/p/"x"/'}, request=request)
    assert 'data-canonical-url="/p/&quot;x&quot;/"' in page
    assert "data-canonical-url" not in render_to_string("base.html", {}, request=request)


@pytest.mark.parametrize(
    ("name", "arg", "lands_on"),
    [
        ("gate-sign", "planning", "/phases/planning/"),
        ("gate-submit", "planning", "/phases/planning/"),
        ("evaluation-upload", "development", "/phases/development/"),
        (
            "item-comment",
            "planning.defining-scope",
            "/phases/planning/#item-planning.defining-scope",
        ),
    ],
)
def test_a_reload_of_a_form_url_opens_the_form_s_page(client, team, name, arg, lands_on):
    client.force_login(team.creator)
    response = client.get(reverse(name, args=[team.project.slug, arg]))
    assert response.status_code == 303
    assert response["Location"].endswith(lands_on)
    assert client.get(response["Location"]).status_code == 200
