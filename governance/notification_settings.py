"""Writes about a user's own e-mail notification settings (docs/notifications.md)."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audits.models import Action
from audits.trail import record
from governance.models import User


@transaction.atomic
def notification_settings_update(*, actor: User, email_notifications: bool) -> User:
    """Turn the actor's own e-mail notifications on or off; the audit event records the old
    and the new value. Setting the value it already has changes and records nothing."""
    if not actor.is_authenticated or not actor.is_active:
        raise PermissionDenied("Sign in to change your notification settings.")
    if not isinstance(email_notifications, bool):
        raise ValidationError(
            {"email_notifications": "E-mail notifications are either on (true) or off (false)."}
        )
    user = User.objects.select_for_update().get(pk=actor.pk)
    before = user.email_notifications
    if before != email_notifications:
        user.email_notifications = email_notifications
        user.save(update_fields=["email_notifications"])
        record(
            actor=actor,
            action=Action.NOTIFICATIONS_UPDATE,
            project=None,
            target=user,
            before={"email_notifications": before},
            after={"email_notifications": email_notifications},
        )
    actor.email_notifications = email_notifications
    return user
