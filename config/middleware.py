"""Idle session timeout without a database write on every request."""

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

REFRESH_EVERY = 60  # seconds; the idle timeout is precise to about this much


class IdleTimeoutMiddleware:
    """Sessions last SESSION_COOKIE_AGE seconds after the user's last activity: each request
    refreshes the session's expiry, at most once a minute."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = int(time.time())
            if now - request.session.get("seen", 0) >= REFRESH_EVERY:
                request.session["seen"] = now  # saving renews the expiry from now
        return self.get_response(request)
