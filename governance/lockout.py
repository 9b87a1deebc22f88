"""The authentication lockout: one rule for the login page, the admin login and signing.

django-axes counts failed authentications in the database (its `AccessAttempt` rows), per
account and per client address separately, and refuses an account or an address that reached
the limit until the cool-off has passed, without checking the password (settings `AXES_*`).
This module is what the product adds to it:

- the limit, the cool-off and what is counted, read from `LOGIN_LOCKOUT_THRESHOLD` and
  `LOGIN_LOCKOUT_COOLOFF` at each call (one pair of settings for every way in);
- the locked-out page: HTTP 429 saying how many minutes are left;
- `reauthenticate`: a password asked again at a decisive moment (signing a gate) is an
  authentication under the same rule, and its lockout check, password check and failure count
  happen one attempt at a time per account (a row lock), so concurrent guesses cannot all
  pass the check before any of them is counted.
"""

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from audits.context import current

LOCKOUT_TEMPLATE = "registration/lockout.html"


# --- The rule, as django-axes reads it (settings AXES_FAILURE_LIMIT, AXES_COOLOFF_TIME, ...) ---


def failure_limit(request: HttpRequest | None = None, credentials: Any = None) -> int:
    """Failed attempts (per account, and per address) that start a lock."""
    return int(settings.LOGIN_LOCKOUT_THRESHOLD)


def cool_off(request: HttpRequest | None = None) -> datetime.timedelta:
    """How long a lock lasts after the failure that started it; older failures are forgotten."""
    return datetime.timedelta(seconds=settings.LOGIN_LOCKOUT_COOLOFF)


def lockout_parameters(request_or_attempt: Any, credentials: Any = None) -> list[str]:
    """Count per account and, separately, per client address (not per combination: a
    combination would let one address try every account, and many addresses one account).

    An attempt with no address (a command or a test calling a service directly) counts for its
    account only, so that such attempts do not share one anonymous bucket and lock each other.
    """
    address = getattr(request_or_attempt, "axes_ip_address", None)
    if address is None:
        address = getattr(request_or_attempt, "ip_address", None)
    return ["username", "ip_address"] if address else ["username"]


# --- When a lock ends, and the page that says so ----------------------------------------------


def locked_until(
    request: HttpRequest, credentials: dict[str, Any] | None
) -> datetime.datetime | None:
    """When the lock on this attempt's account or address ends, or None if neither is locked.

    A lock ends when enough of the failures that caused it have aged past the cool-off for the
    count to fall below the limit (axes keeps one row per account, address and user agent, each
    dated by its latest failure).
    """
    AxesProxyHandler.update_request(request)
    handler = AxesProxyHandler.get_implementation()
    limit = failure_limit(request, credentials)
    ends = []
    for attempts in handler.get_user_attempts(request, credentials):
        total = 0
        rows = attempts.order_by("-attempt_time").values_list(
            "attempt_time", "failures_since_start"
        )
        for at, failures in rows:
            total += failures
            if total >= limit:
                ends.append(at + cool_off(request))
                break
    now = timezone.now()
    return max((end for end in ends if end > now), default=None)


def minutes_left(until: datetime.datetime | None) -> int:
    """Whole minutes until `until` (at least one), or the full cool-off when unknown."""
    seconds = (until - timezone.now()).total_seconds() if until else cool_off().total_seconds()
    return max(1, math.ceil(seconds / 60))


def _minutes(count: int) -> str:
    return f"{count} minute{'' if count == 1 else 's'}"


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The page a locked-out login gets instead of the login form (AXES_LOCKOUT_CALLABLE)."""
    until = locked_until(request, credentials)
    minutes = minutes_left(until)
    response = render(
        request,
        LOCKOUT_TEMPLATE,
        {"minutes": minutes, "until": until, "login_url": request.path},
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response


# --- Re-authentication under the same rule ----------------------------------------------------


class LockedOut(PermissionDenied):
    """Refused without checking the password: too many failed attempts for the account or from
    the address. `until` says when the lock ends (None if it could not be told)."""

    def __init__(self, message: str, until: datetime.datetime | None) -> None:
        super().__init__(message)
        self.until = until

    @property
    def retry_after(self) -> int:
        return minutes_left(self.until) * 60


@dataclass(frozen=True)
class Reauthentication:
    """The outcome of `reauthenticate`: what was wrong (None: the credentials were right) and,
    after a failure, when the lock it started or extended ends (None: no lock)."""

    problem: str | None
    locked_until: datetime.datetime | None = None


def _attempt_request() -> HttpRequest:
    """The attempt as axes sees a login. Where it comes from is the audit context's: the
    request's client address, already resolved by the one TRUSTED_PROXY_COUNT rule
    (`audits.middleware.client_ip`), and its user agent."""
    context = current()
    request = HttpRequest()
    request.method = "POST"
    request.path = request.path_info = "/reauthentication/"
    request.META = {"PATH_INFO": request.path, "REMOTE_ADDR": context.ip or ""}
    if context.user_agent:
        request.META["HTTP_USER_AGENT"] = context.user_agent
    return request


def reauthenticate(
    *, user: AbstractBaseUser, verify: Callable[[], str | None], purpose: str
) -> Reauthentication:
    """Check `user`'s credentials again (`verify` returns the problem in words, or None), under
    the login lockout.

    Raises `LockedOut`, checking nothing, while the account or the client address is locked.
    A failure counts like a failed login (and the failure that reaches the limit starts a lock,
    which the audit trail records); a success clears the count as a login does.

    Runs inside the caller's transaction, which must commit even when the caller then refuses,
    so that the failure stays counted. The user's row is locked first: re-authentications of
    one account queue up, each seeing the failures counted before it.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("reauthenticate() must run inside the caller's transaction.")
    get_user_model()._default_manager.select_for_update().values_list("pk", flat=True).get(
        pk=user.pk
    )
    username = user.get_username()
    credentials = get_credentials(username)
    request = _attempt_request()
    if not AxesProxyHandler.is_allowed(request, credentials):
        until = locked_until(request, credentials)
        raise LockedOut(
            f"{purpose} is locked after repeated failed authentication (at login or here): "
            f"try again in {_minutes(minutes_left(until))}.",
            until,
        )
    problem = verify()
    if problem is None:
        if settings.AXES_RESET_ON_SUCCESS:
            AxesProxyHandler.get_implementation().reset_user_attempts(request, credentials)
        return Reauthentication(problem=None)
    AxesProxyHandler.user_login_failed(sender=__name__, credentials=credentials, request=request)
    return Reauthentication(problem=problem, locked_until=locked_until(request, credentials))
