"""Login, logout, failed-login and lockout events.

Django's auth views announce these only through signals, and django-axes announces a lockout
only through its `user_locked_out` signal, so this is the one place the trail listens to
signals; every other event is written by the service that makes the change.
"""

from typing import Any

from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from audits.models import Action
from audits.trail import record


@receiver(user_logged_in)
def on_login(sender, request, user, **kwargs) -> None:
    with transaction.atomic():
        record(actor=user, action=Action.LOGIN, project=None, target=user)


@receiver(user_logged_out)
def on_logout(sender, request, user, **kwargs) -> None:
    if user is None:
        return  # the session had already expired: nobody to attribute
    with transaction.atomic():
        record(actor=user, action=Action.LOGOUT, project=None, target=user)


def _refused_by_lockout(request: HttpRequest | None) -> bool:
    # axes marks the request locked out; an attempt it refused outright was not counted, so it
    # has no failure count (the attempt that reached the limit has one).
    return bool(getattr(request, "axes_locked_out", False)) and (
        getattr(request, "axes_failures_since_start", None) is None
    )


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str(credentials.get("username", ""))[:150]
    after: dict[str, Any] = {"username": username}
    if _refused_by_lockout(request):
        after["refused"] = "locked out: the password was not checked"
    with transaction.atomic():
        record(
            actor=None,
            action=Action.LOGIN_FAILED,
            project=None,
            target_type="governance.user",
            target_text=username,
            actor_name=username,
            after=after,
        )


@receiver(user_locked_out)
def on_locked_out(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    """The failure that reached the limit locks the account or the address (governance.lockout);
    attempts refused during the lock are failed logins, not new lockouts."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:
        return
    username = str(username or "")[:150]
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    attempted_at = getattr(request, "axes_attempt_time", None)
    cool_off = get_cool_off(request)
    with transaction.atomic():
        record(
            actor=None,
            action=Action.LOCKED_OUT,
            project=None,
            target_type="governance.user",
            target_id=user.pk if user is not None else "",
            target_text=username or str(ip_address or ""),
            actor_name=username,
            after={
                "username": username,
                "ip_address": ip_address,
                "failures": failures,
                "cool_off_seconds": int(cool_off.total_seconds()) if cool_off else None,
                "locked_until": attempted_at + cool_off if attempted_at and cool_off else None,
            },
        )
