"""Idle session timeout without a database write on every request."""

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url

REFRESH_EVERY = 60  # seconds; the idle timeout is precise to about this much
# Sent by a page's own periodic refresh (the run page's progress, see templates/lifecycle/
# run.html): the browser asks, not the user, so it must not count as activity.
BACKGROUND_POLL_HEADER = "X-Background-Poll"


def is_background_poll(request: HttpRequest) -> bool:
    return request.headers.get(BACKGROUND_POLL_HEADER) == "1"


class IdleTimeoutMiddleware:
    """Sessions last SESSION_COOKIE_AGE seconds after the user's last activity: each request
    refreshes the session's expiry, at most once a minute.

    A background poll reads the session but never renews it (it does not write it, and nothing
    else may: SESSION_SAVE_EVERY_REQUEST stays off), so a page left open on a queued run still
    times out. Once the session has expired, an htmx request (a poll or a click) that would be
    redirected to the login page gets an `HX-Redirect` instead: the browser goes to the login
    page, which also ends the polling, rather than swapping the login form into part of the
    page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated and not is_background_poll(request):
            now = int(time.time())
            if now - request.session.get("seen", 0) >= REFRESH_EVERY:
                request.session["seen"] = now  # saving renews the expiry from now
        response = self.get_response(request)
        if request.headers.get("HX-Request") == "true" and _redirects_to_login(response):
            redirect = HttpResponse(status=204)
            redirect["HX-Redirect"] = response["Location"]
            return redirect
        return response


def _redirects_to_login(response: HttpResponse) -> bool:
    return response.status_code == 302 and urlsplit(response.get("Location", "")).path == (
        resolve_url(settings.LOGIN_URL)
    )
