"""Login, logout and failed-login events.

Django's auth views announce these only through signals, so this is the one place the trail
listens to signals; every other event is written by the service that makes the change.
"""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

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


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str(credentials.get("username", ""))[:150]
    with transaction.atomic():
        record(
            actor=None,
            action=Action.LOGIN_FAILED,
            project=None,
            target_type="governance.user",
            target_text=username,
            actor_name=username,
            after={"username": username},
        )
