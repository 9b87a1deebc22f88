"""Request and response rules that hold for every page and endpoint alike.

- A NUL character is never valid input, and PostgreSQL refuses to store or even compare text
  containing one: a filter such as `?q=%00` would otherwise fail as a server error deep inside a
  query. It is refused here, before any view or query sees it, with a 400 naming the parameter —
  so both databases answer the same.
- Answers to a signed-in user (pages, API responses, evidence downloads) carry confidential
  project data: no shared cache or browser history cache may keep them.
"""

from collections.abc import Callable, Iterable

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.cache import patch_cache_control
from django.utils.html import format_html

NUL = "\x00"
API_PREFIX = "/api/"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def _shown(name: str) -> str:
    # The refused name itself may hold the NUL: show it percent-encoded, as it was sent.
    return name.replace(NUL, "%00")


def _first_nul(pairs: Iterable[tuple[str, list[str]]]) -> str | None:
    for name, values in pairs:
        if NUL in name or any(NUL in value for value in values):
            return name
    return None


def nul_problem(request: HttpRequest) -> tuple[str, str] | None:
    """(the refused input, what is wrong with it) for the first NUL character in a query
    parameter or a url-encoded form field of the request; None when there is none."""
    name = _first_nul(request.GET.lists())
    if name is not None:
        return name, (
            f"The query parameter “{_shown(name)}” contains a NUL character (%00), "
            "which is not allowed."
        )
    # Only url-encoded form bodies: parsing a multipart upload here would read every file before
    # the view could choose how. Multipart fields go through form and serializer fields, whose
    # text fields refuse NUL themselves; file contents are checked by the upload validators.
    if request.method == "POST" and request.content_type == FORM_CONTENT_TYPE:
        try:
            fields = request.POST.lists()
        except (BadRequest, SuspiciousOperation):
            return None  # too big or too many fields: the view's own parsing refuses it again
        name = _first_nul(fields)
        if name is not None:
            return name, (
                f"The form field “{_shown(name)}” contains a NUL character (%00), "
                "which is not allowed."
            )
    return None


def _refusal(request: HttpRequest, name: str, message: str) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        # The API's one error body (governance.api.base.exception_handler).
        body = {
            "error": {
                "status": 400,
                "code": "invalid",
                "message": message,
                "fields": {_shown(name): [message]},
            }
        }
        return JsonResponse(body, status=400)
    return HttpResponseBadRequest(
        format_html(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>Bad request</title></head><body><h1>Bad request</h1><p>{}</p>"
            "<p>Remove it and try again.</p></body></html>",
            message,
        ),
        content_type="text/html; charset=utf-8",
    )


class RefuseNulMiddleware:
    """Answer 400, naming the parameter, to any request whose query parameters or url-encoded
    form fields contain a NUL character, and 404 to a page address containing one. Placed
    before anything that reads the database (sessions, authentication)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if NUL in request.path and not request.path.startswith(API_PREFIX):
            # No page's address holds a NUL (the API's views answer their own JSON 404).
            raise Http404("No such page.")
        problem = nul_problem(request)
        if problem is not None:
            return _refusal(request, *problem)
        return self.get_response(request)


class PrivateCacheMiddleware:
    """Every answer to an authenticated request (session or API token) is `Cache-Control:
    private, no-store`, merged into what the view set (a stricter directive stays)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Set by the authentication middleware, or by DRF for a token; read after the view.
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
        return response
