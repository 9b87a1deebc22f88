"""HTTP helpers for the lifecycle's form endpoints.

A form that posts to its own URL (a gate's sign or submit, an evaluation upload, an item's
actions) is answered, when refused, with its page again at that URL. The page puts its own
address back in the address bar (`canonical_url`, see templates/base.html), and `post_only`
makes sure a GET of the form's URL (a reload, a bookmark, a link from elsewhere) goes to the
page the form lives on instead of answering a blank 405.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import reverse

from governance.models import User
from lifecycle.checklists import selectors as checklist_selectors

View = Callable[..., HttpResponse]
# The page a form lives on, from the request and the URL's arguments.
Back = Callable[..., str]


class SeeOther(HttpResponse):
    """303 See Other: the resource is elsewhere; fetch it with GET."""

    status_code = 303

    def __init__(self, url: str) -> None:
        super().__init__()
        self["Location"] = url


def post_only(back: Back) -> Callable[[View], View]:
    """Like `require_POST`, but a GET or HEAD is sent (303) to `back(request, **kwargs)`, the
    page that holds the form; other methods still get 405.

        @login_required
        @post_only(back=phase_of)
        def gate_sign_view(request, slug, phase): ...
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                return view(request, *args, **kwargs)
            if request.method in ("GET", "HEAD"):
                return SeeOther(back(request, *args, **kwargs))
            return HttpResponseNotAllowed(["POST"])

        return wrapper

    return decorator


# Ready-made `back`s for the lifecycle's URLs. They only name a page; the page checks who may
# see it (a project someone may not see answers 404 there, as it would anywhere).


def phase_of(request: HttpRequest, slug: str, phase: str, **_: Any) -> str:
    """The phase page of `<slug>/gates/<phase>/…` and `<slug>/phases/<phase>/…` forms."""
    return reverse("phase", args=[slug, phase])


def item_of(request: HttpRequest, slug: str, key: str, **_: Any) -> str:
    """The item's card on its phase page; the project page when the user may not see it."""
    if not isinstance(request.user, User):  # anonymous: the login page comes first anyway
        return reverse("project-detail", args=[slug])
    phase = (
        checklist_selectors.checklist_items_for_user(request.user)
        .filter(project__slug=slug, key=key)
        .prefetch_related(None)
        .values_list("phase", flat=True)
        .first()
    )
    if phase is None:
        return reverse("project-detail", args=[slug])
    return f"{reverse('phase', args=[slug, phase])}#item-{key}"


def evidence_of(request: HttpRequest, slug: str, pk: int, **_: Any) -> str:
    """The card of the item the evidence belongs to; the project page when the user may not
    see it."""
    if not isinstance(request.user, User):
        return reverse("project-detail", args=[slug])
    found = (
        checklist_selectors.evidence_for_user(request.user)
        .filter(item__project__slug=slug, pk=pk)
        .values_list("item__phase", "item__key")
        .first()
    )
    if found is None:
        return reverse("project-detail", args=[slug])
    phase, key = found
    return f"{reverse('phase', args=[slug, phase])}#item-{key}"
