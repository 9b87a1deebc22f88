"""The authentication lockout: one rule for the login page, the admin login, signing and
changing one's password.

django-axes counts failed authentications in the database (its `AccessAttempt` rows), per
account and per client address separately, and refuses an account or an address that reached
its limit until the cool-off has passed, without checking the password (settings `AXES_*`).
This module is what the product adds to it:

- the limits, the cool-off and what is counted, read from `LOGIN_LOCKOUT_THRESHOLD`,
  `LOGIN_LOCKOUT_ADDRESS_THRESHOLD` and `LOGIN_LOCKOUT_COOLOFF` at each call (one set of
  settings for every way in);
- `LockoutHandler`, axes' database handler with two differences: an address has its own,
  higher limit (many people share one behind a NAT or an unconfigured proxy), and a success
  clears the failures of the account that succeeded, not of everyone at its address;
- the locked-out page: HTTP 429 saying how many minutes are left;
- `reauthenticate`: a password asked again at a decisive moment (signing a gate, changing
  one's password: `check_own_password`) is an authentication under the same rule, and its
  lockout check, password check and failure count happen one attempt at a time per account
  (a row lock), so concurrent guesses cannot all pass the check before any of them is counted.
"""

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_credentials, get_lockout_parameters
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from audits.context import current

LOCKOUT_TEMPLATE = "registration/lockout.html"


# --- The rule, as django-axes reads it (settings AXES_FAILURE_LIMIT, AXES_COOLOFF_TIME, ...) ---


def failure_limit(request: HttpRequest | None = None, credentials: Any = None) -> int:
    """Failed attempts for one account that lock it (AXES_FAILURE_LIMIT, the limit axes
    compares `LockoutHandler.get_failures` with)."""
    return int(settings.LOGIN_LOCKOUT_THRESHOLD)


def address_failure_limit() -> int:
    """Failed attempts from one client address that lock it, for every account. Never below
    the account's limit: an address may be a whole hospital behind one NAT, and if the proxy
    count is not configured (TRUSTED_PROXY_COUNT) every client is the proxy's address."""
    return max(int(settings.LOGIN_LOCKOUT_ADDRESS_THRESHOLD), failure_limit())


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


_LIMITS: dict[str, Callable[[], int]] = {
    "username": failure_limit,
    "ip_address": address_failure_limit,
}


class LockoutHandler(AxesDatabaseHandler):  # type: ignore[misc]  # axes has no type hints
    """django-axes' database handler (AXES_HANDLER) with the address's own limit and a success
    that clears only its own account's failures."""

    def counted(
        self, request: HttpRequest, credentials: dict[str, Any] | None = None
    ) -> list[tuple[QuerySet[AccessAttempt], int]]:
        """The failures within the cool-off that count against this attempt, per lockout
        parameter (the account, the address), each with its limit."""
        parameters = get_lockout_parameters(request, credentials)
        attempts = self.get_user_attempts(request, credentials)
        return [
            (rows, _LIMITS[str(parameter)]())
            for parameter, rows in zip(parameters, attempts, strict=True)
        ]

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """The count that decides the lock, which axes compares with `failure_limit` (the
        account's): a count that reached its own limit (the address's is the higher), else the
        account's count. It is also the number the audit trail records at a lockout."""
        totals = [
            (int(rows.aggregate(n=Sum("failures_since_start"))["n"] or 0), limit)
            for rows, limit in self.counted(request, credentials)
        ]
        reached = [total for total, limit in totals if total >= limit]
        if reached:
            return max(reached)
        return totals[0][0] if totals else 0  # the account's (the first parameter)

    def reset_user_attempts(
        self, request: HttpRequest, credentials: dict[str, Any] | None = None
    ) -> int:
        """A success (a login, a re-authentication) clears the failures of the account that
        succeeded, from every address. Not the address's: axes' own reset deletes every row of
        the address too, so one valid account would let its owner guess others' passwords
        without limit, logging in as themselves between guesses."""
        username = get_client_username(request, credentials)
        if not username:
            return 0
        count, _ = AccessAttempt.objects.filter(username=username).delete()
        return int(count)


def _handler() -> LockoutHandler:
    handler = AxesProxyHandler.get_implementation()
    if not isinstance(handler, LockoutHandler):
        raise TypeError("AXES_HANDLER must be governance.lockout.LockoutHandler.")
    return handler


# --- When a lock ends, and the page that says so ----------------------------------------------


def locked_until(
    request: HttpRequest, credentials: dict[str, Any] | None
) -> datetime.datetime | None:
    """When the lock on this attempt's account or address ends, or None if neither is locked.

    A lock ends when enough of the failures that caused it have aged past the cool-off for the
    count to fall below its limit (axes keeps one row per account, address and user agent, each
    dated by its latest failure).
    """
    AxesProxyHandler.update_request(request)
    ends = []
    for attempts, limit in _handler().counted(request, credentials):
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
    which the audit trail records); a success clears the account's own count as a login does
    (`LockoutHandler.reset_user_attempts`), not other accounts' failures from its address.

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
            _handler().reset_user_attempts(request, credentials)
        return Reauthentication(problem=None)
    AxesProxyHandler.user_login_failed(sender=__name__, credentials=credentials, request=request)
    return Reauthentication(problem=problem, locked_until=locked_until(request, credentials))


def check_own_password(*, user: AbstractBaseUser, password: str, purpose: str) -> Reauthentication:
    """`user`'s current password asked again (to change it): a password check under the
    lockout like any other, so the old-password field is not a way round the login's limit.

    Raises `LockedOut` while the account or the address is locked. Commits the failure's count
    in its own transaction (or the caller's), so a form that then refuses keeps it counted.
    """
    with transaction.atomic():
        return reauthenticate(
            user=user,
            verify=lambda: None if user.check_password(password) else "wrong password",
            purpose=purpose,
        )
