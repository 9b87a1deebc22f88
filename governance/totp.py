"""Two-step verification that each user sets up for themselves on the account page: an
authenticator app (a django-otp TOTP device) and the recovery codes that stand in for it (a
django-otp static device, one token per code, each consumed by its use).

Every write acts on the actor's own devices only (there is no way to name someone else's) and
is audited without the secret key or the codes. Regenerating the codes and removing the app ask
for the password again (and, to remove, a current code) under the login lockout
(`governance.lockout.reauthenticate`), so they are no way round its limit on guesses.
"""

import base64
import io
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import qrcode
import qrcode.image.svg
from django.core.exceptions import ValidationError
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audits.models import Action
from audits.trail import record
from governance.lockout import reauthenticate
from governance.models import User

APP_NAME = "Authenticator app"
CODES_NAME = "Recovery codes"
RECOVERY_CODE_COUNT = 10
ISSUER = "LLM governance"  # what the authenticator app lists the account under


@dataclass(frozen=True)
class TwoStepStatus:
    """What the account page shows: the confirmed app, an enrolment in progress, and how many
    recovery codes are left."""

    device: TOTPDevice | None
    pending: TOTPDevice | None
    recovery_codes_left: int

    @property
    def enabled(self) -> bool:
        return self.device is not None


def status_of(user: User) -> TwoStepStatus:
    """The user's own two-step verification as the account page shows it."""
    devices = list(TOTPDevice.objects.devices_for_user(user, confirmed=None).order_by("pk"))
    return TwoStepStatus(
        device=next((d for d in devices if d.confirmed), None),
        pending=next((d for d in reversed(devices) if not d.confirmed), None),
        recovery_codes_left=StaticToken.objects.filter(
            device__user=user, device__confirmed=True
        ).count(),
    )


# --- What the authenticator app is given -------------------------------------------------------


def secret_for_manual_entry(device: TOTPDevice) -> str:
    """The key in base32, in groups of four, for typing into an app that cannot scan."""
    secret = base64.b32encode(device.bin_key).decode()
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def provisioning_uri(device: TOTPDevice) -> str:
    """The otpauth:// address the QR code holds (the Key Uri Format authenticator apps read)."""
    label = quote(f"{ISSUER}:{device.user.get_username()}")
    params = urlencode(
        {
            "secret": base64.b32encode(device.bin_key).decode().rstrip("="),
            "issuer": ISSUER,
            "algorithm": "SHA1",
            "digits": device.digits,
            "period": device.step,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{params}"


def qr_code_data_uri(device: TOTPDevice) -> str:
    """The QR code as an SVG data: address for an <img> (CSP img-src allows data:), drawn on
    white so that it scans on a dark page too."""
    image = qrcode.make(
        provisioning_uri(device), image_factory=qrcode.image.svg.SvgPathFillImage, border=2
    )
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- Enrolment ---------------------------------------------------------------------------------


def _device_values(device: TOTPDevice, *, created: bool) -> dict[str, object]:
    # The same fields as the admin's enrolment event (governance.services.otp_device_save);
    # never the key.
    return {
        "device": device.pk,
        "name": device.name,
        "confirmed": device.confirmed,
        "created": created,
    }


@transaction.atomic
def enrolment_start(*, actor: User) -> TOTPDevice:
    """Start setting up an authenticator app: a new, unconfirmed TOTP device with a fresh key
    (an earlier unfinished setup is discarded). Signing asks for its codes only once it is
    confirmed (`enrolment_confirm`)."""
    User.objects.select_for_update().values_list("pk", flat=True).get(pk=actor.pk)
    if TOTPDevice.objects.devices_for_user(actor, confirmed=True).exists():
        raise ValidationError(
            "Two-step verification is already set up: remove the authenticator app first "
            "to set up another."
        )
    TOTPDevice.objects.devices_for_user(actor, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=actor, name=APP_NAME, confirmed=False)
    record(
        actor=actor,
        action=Action.OTP_DEVICE_SAVE,
        project=None,
        target=actor,
        after=_device_values(device, created=True),
    )
    return device


def _normalised(code: str) -> str:
    return "".join((code or "").split()).replace("-", "").lower()


def enrolment_confirm(*, actor: User, code: str) -> list[str]:
    """Confirm the authenticator app with a code it shows: from then on signing asks for a code.
    Returns the new recovery codes, to be shown this once: the page never shows them again and
    the audit trail records only how many there are.

    A wrong code changes nothing but is counted by django-otp's own slow-down on the device
    (committed although the confirmation is refused).
    """
    problem = None
    with transaction.atomic():
        device = (
            TOTPDevice.objects.devices_for_user(actor, confirmed=False)
            .select_for_update()
            .order_by("-pk")
            .first()
        )
        allowed = device is not None and device.verify_is_allowed()[0]
        if device is None:
            problem = (
                "Start the setup first: there is no authenticator app waiting to be confirmed."
            )
        elif not allowed:
            problem = "Too many wrong codes in a row: wait a few seconds and try again."
        elif not device.verify_token(_normalised(code)):
            problem = "That code does not match: enter the 6-digit code your app shows now."
        else:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            TOTPDevice.objects.devices_for_user(actor, confirmed=False).delete()
            codes = _new_recovery_codes(actor, audited=False)
            # One event for the request: the app confirmed, with how many codes came with it.
            record(
                actor=actor,
                action=Action.OTP_DEVICE_SAVE,
                project=None,
                target=actor,
                after={**_device_values(device, created=False), "recovery_codes": len(codes)},
            )
            return codes
    # No setup in progress is about the page, not the code typed.
    raise ValidationError(problem if device is None else {"code": problem})


def _random_code() -> str:
    # An all-digit code would look like an app code; django-otp's tokens are 8 base32
    # characters, so this almost never loops.
    while True:
        code = str(StaticToken.random_token())
        if not code.isdigit():
            return code


def _new_recovery_codes(
    actor: User, replaced: int | None = None, *, audited: bool = True
) -> list[str]:
    """Replace the actor's recovery codes with `RECOVERY_CODE_COUNT` new ones (in the caller's
    transaction) and record that, without the codes (unless the caller's own event says it)."""
    StaticDevice.objects.devices_for_user(actor, confirmed=None).delete()
    device = StaticDevice.objects.create(user=actor, name=CODES_NAME, confirmed=True)
    codes = [_random_code() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    if audited:
        after: dict[str, object] = {"count": len(codes)}
        if replaced is not None:
            after["replaced_unused"] = replaced
        record(
            actor=actor,
            action=Action.RECOVERY_CODES_GENERATE,
            project=None,
            target=actor,
            after=after,
        )
    return codes


# --- Re-authenticated changes ------------------------------------------------------------------


class TwoStepRefused(ValidationError):
    """Re-authentication for a two-step change failed; nothing changed. The failure is counted
    by the login lockout."""


def recovery_codes_regenerate(*, actor: User, password: str) -> list[str]:
    """New recovery codes, the old ones no longer valid; the password is asked again.

    Raises `governance.lockout.LockedOut` while the account or address is locked out, and
    `TwoStepRefused` (on the password field) after a wrong password, which counts as a failed
    login (committed although nothing else changes).
    """
    with transaction.atomic():
        if not TOTPDevice.objects.devices_for_user(actor, confirmed=True).exists():
            raise ValidationError(
                "Set up an authenticator app first: recovery codes stand in for it."
            )
        attempt = reauthenticate(
            user=actor,
            verify=lambda: None if actor.check_password(password or "") else "wrong password",
            purpose="Regenerating recovery codes",
        )
        if attempt.problem is None:
            left = StaticToken.objects.filter(device__user=actor).count()
            return _new_recovery_codes(actor, replaced=left)
    raise TwoStepRefused({"password": "Wrong password: no new recovery codes were made."})


def totp_remove(*, actor: User, password: str, code: str) -> None:
    """Remove the authenticator app and the recovery codes: signing then asks for the password
    only. Asks for the password and a current code from the app or a recovery code, under the
    login lockout (raises `LockedOut` during a lock; `TwoStepRefused` after a failure, which is
    counted)."""
    with transaction.atomic():
        device = TOTPDevice.objects.devices_for_user(actor, confirmed=True).first()
        if device is None:
            raise ValidationError(
                "Two-step verification is not set up: there is nothing to remove."
            )
        field = "password"

        def verify() -> str | None:
            nonlocal field
            if not actor.check_password(password or ""):
                return "wrong password"
            field = "code"
            # The removal's own event says it; the codes go with the app.
            return second_factor_problem(actor, code, record_use=False)

        attempt = reauthenticate(
            user=actor, verify=verify, purpose="Removing two-step verification"
        )
        if attempt.problem is None:
            left = StaticToken.objects.filter(device__user=actor).count()
            before = {"device": device.pk, "name": device.name, "recovery_codes_left": left}
            TOTPDevice.objects.devices_for_user(actor, confirmed=None).delete()
            StaticDevice.objects.devices_for_user(actor, confirmed=None).delete()
            record(
                actor=actor,
                action=Action.OTP_DEVICE_DELETE,
                project=None,
                target=actor,
                before=before,
            )
            return
    message = (
        "Wrong password: two-step verification is still on."
        if field == "password"
        else "That code does not match a current app code or an unused recovery code: "
        "two-step verification is still on."
    )
    raise TwoStepRefused({field: message})


# --- The second factor at a decisive moment ----------------------------------------------------


def second_factor_problem(user: User, code: str, *, record_use: bool = True) -> str | None:
    """What is wrong with the code `user` gave as their second factor (None: it is right, or
    they have no authenticator app confirmed and need none).

    A code shaped like the app's (digits) is checked against the app; anything else against the
    unused recovery codes, and a recovery code that matches is consumed and its use recorded.
    Run it inside the caller's re-authentication (`governance.lockout.reauthenticate`), whose
    row lock on the user keeps one code from being used twice at once.
    """
    apps = list(TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update())
    if not apps:
        return None
    code = _normalised(code)
    if not code:
        return "a TOTP code is required for this account"
    if code.isdigit():
        return None if any(app.verify_token(code) for app in apps) else "wrong TOTP code"
    for device in StaticDevice.objects.devices_for_user(user, confirmed=True).select_for_update():
        if device.verify_token(code):
            if not record_use:
                return None
            # Its own event: the code is used up even if what it authorised is then refused.
            record(
                actor=user,
                action=Action.RECOVERY_CODE_USED,
                project=None,
                target=user,
                after={"recovery_codes_left": device.token_set.count()},
            )
            return None
    return "wrong TOTP code"
