"""Two-step verification set up on the account page (issue 12, item 9): enrolling an
authenticator app, recovery codes shown once and consumed by their use, regenerating and
removing under re-authentication, audit events without secrets, and nobody reaching another
user's devices."""

import base64
import re

import pytest
from axes.models import AccessAttempt
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audits.models import Action, AuditEvent
from governance import totp as two_step
from governance.lockout import LockedOut
from governance.roles import Role
from lifecycle.gates import services as gate_services
from lifecycle.phases import Phase
from tests.factories import PASSWORD, UserFactory, settle, sign

pytestmark = pytest.mark.django_db

ACCOUNT = reverse("account")


def app_code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code the authenticator app shows (`steps_ahead` 30-second steps from now: a code is
    accepted one step either side, and never twice)."""
    device.refresh_from_db()
    code = totp(
        device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=steps_ahead
    )
    return f"{code:06d}"


def enrolled(user) -> tuple[TOTPDevice, list[str]]:
    """`user` with a confirmed app and fresh recovery codes (through the services)."""
    device = two_step.enrolment_start(actor=user)
    codes = two_step.enrolment_confirm(actor=user, code=app_code(device))
    device.refresh_from_db()
    return device, codes


def in_review(team):
    settle(team, Phase.PLANNING)
    return gate_services.gate_submit(
        actor=team.creator, gate=team.project.gates.get(phase="planning")
    )


def events(user, *actions):
    return list(
        AuditEvent.objects.filter(
            target_type="governance.user", target_id=str(user.pk), action__in=actions
        ).order_by("pk")
    )


# --- The page ---------------------------------------------------------------------------------


def test_two_step_is_off_at_first_and_set_up_shows_a_qr_code_and_the_key(client):
    user = UserFactory()
    client.force_login(user)
    page = client.get(ACCOUNT).content.decode()
    assert "Two-step verification" in page
    assert "Set up an authenticator app" in page
    assert f'href="{reverse("account-notifications")}"' in page  # the e-mail settings, linked

    response = client.post(ACCOUNT, {"action": "totp-start"})
    assert response.status_code == 302 and response["Location"].endswith("#two-step")
    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    page = client.get(ACCOUNT).content.decode()
    assert '<img src="data:image/svg+xml;base64,' in page
    shown = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1)
    assert base64.b32decode(shown.replace(" ", "")) == device.bin_key
    assert "Code from the app" in page


def test_the_qr_code_holds_the_otpauth_address_of_the_key():
    user = UserFactory(username="chair@hospital")
    device = two_step.enrolment_start(actor=user)
    uri = two_step.provisioning_uri(device)
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    assert uri.startswith("otpauth://totp/LLM%20governance%3Achair%40hospital?")
    assert f"secret={secret}" in uri and "issuer=LLM%20governance" in uri
    svg = base64.b64decode(two_step.qr_code_data_uri(device).split(",", 1)[1]).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "<script" not in svg and "style=" not in svg


def test_a_wrong_code_is_refused_and_the_app_stays_unconfirmed(client):
    user = UserFactory()
    client.force_login(user)
    client.post(ACCOUNT, {"action": "totp-start"})
    response = client.post(ACCOUNT, {"action": "totp-confirm", "confirm-code": "000000"})
    assert response.status_code == 400
    assert "That code does not match" in response.content.decode()
    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    assert device.throttling_failure_count == 1  # counted although refused
    assert not StaticDevice.objects.filter(user=user).exists()
    # Not yet confirmed: signing does not ask for a code.
    assert two_step.second_factor_problem(user, "") is None


def test_confirming_shows_ten_recovery_codes_once(client):
    user = UserFactory()
    client.force_login(user)
    client.post(ACCOUNT, {"action": "totp-start"})
    device = TOTPDevice.objects.get(user=user)
    response = client.post(ACCOUNT, {"action": "totp-confirm", "confirm-code": app_code(device)})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Store them now" in page
    codes = re.findall(r'<li><code class="secret">([a-z2-7]+)</code></li>', page)
    assert len(codes) == 10 == len(set(codes))
    assert sorted(codes) == sorted(
        StaticToken.objects.filter(device__user=user).values_list("token", flat=True)
    )
    assert "Two-step verification is on" in page
    device.refresh_from_db()
    assert device.confirmed

    again = client.get(ACCOUNT).content.decode()
    assert not any(code in again for code in codes)
    assert "10 unused recovery codes left" in again
    assert 'id="totp-secret"' not in again  # the key is never shown again either
    assert "Make new recovery codes" in again and "Remove two-step verification" in again


def test_setting_up_again_needs_the_app_removed_first():
    user = UserFactory()
    enrolled(user)
    with pytest.raises(ValidationError, match="already set up"):
        two_step.enrolment_start(actor=user)


def test_confirming_without_a_setup_in_progress_says_so():
    with pytest.raises(ValidationError, match="Start the setup first"):
        two_step.enrolment_confirm(actor=UserFactory(), code="123456")


# --- Signing ------------------------------------------------------------------------------------


def test_a_recovery_code_signs_a_gate_once_and_not_twice(team):
    gate = in_review(team)
    chair = team[Role.COMMITTEE_CHAIR]
    _, codes = enrolled(chair)
    with pytest.raises(gate_services.ReauthenticationFailed, match="TOTP code is required"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "review")
    assert sign(team, gate, Role.COMMITTEE_CHAIR, "review", otp_token=codes[0]).pk
    assert StaticToken.objects.filter(device__user=chair).count() == 9
    gate.refresh_from_db()
    with pytest.raises(gate_services.ReauthenticationFailed, match="wrong TOTP code"):
        sign(team, gate, Role.COMMITTEE_CHAIR, "approve", otp_token=codes[0])
    StaticDevice.objects.filter(user=chair).update(throttling_failure_count=0)
    TOTPDevice.objects.filter(user=chair).update(throttling_failure_count=0)
    assert sign(team, gate, Role.COMMITTEE_CHAIR, "approve", otp_token=codes[1]).pk


def test_the_app_code_signs_too(team):
    gate = in_review(team)
    device, _ = enrolled(team[Role.COMMITTEE_CHAIR])
    # The confirming code was used; the next step's code is accepted (one step of tolerance).
    assert sign(team, gate, Role.COMMITTEE_CHAIR, "review", otp_token=app_code(device, 1)).pk


def test_the_second_factor_check_consumes_a_recovery_code_and_records_its_use():
    user = UserFactory()
    _, codes = enrolled(user)
    assert two_step.second_factor_problem(user, f" {codes[3].upper()} ") is None
    assert two_step.second_factor_problem(user, codes[3]) == "wrong TOTP code"
    used = events(user, Action.RECOVERY_CODE_USED)
    assert len(used) == 1 and used[0].after == {"recovery_codes_left": 9}
    assert codes[3] not in used[0].payload
    # An app code never reaches the recovery codes, and a user without an app needs no code.
    StaticDevice.objects.filter(user=user).update(throttling_failure_count=0)
    assert two_step.second_factor_problem(user, "123456") == "wrong TOTP code"
    assert StaticToken.objects.filter(device__user=user).count() == 9
    assert two_step.second_factor_problem(UserFactory(), "") is None


# --- Regenerating and removing --------------------------------------------------------------------


def test_new_recovery_codes_need_the_password_and_replace_the_old_ones(client):
    user = UserFactory()
    _, old = enrolled(user)
    client.force_login(user)
    response = client.post(ACCOUNT, {"action": "recovery-codes", "codes-password": "wrong"})
    assert response.status_code == 400
    assert "Wrong password: no new recovery codes were made." in response.content.decode()
    assert AccessAttempt.objects.filter(
        username=user.username
    ).exists()  # counted as a failed login
    assert sorted(
        StaticToken.objects.filter(device__user=user).values_list("token", flat=True)
    ) == sorted(old)

    response = client.post(ACCOUNT, {"action": "recovery-codes", "codes-password": PASSWORD})
    assert response.status_code == 200
    page = response.content.decode()
    new = re.findall(r'<li><code class="secret">([a-z2-7]+)</code></li>', page)
    assert len(new) == 10 and not set(new) & set(old)
    assert "the old ones no longer work" in page
    assert two_step.second_factor_problem(user, old[0]) == "wrong TOTP code"
    assert not AccessAttempt.objects.filter(username=user.username).exists()  # success clears it
    event = events(user, Action.RECOVERY_CODES_GENERATE)[-1]
    assert event.after == {"count": 10, "replaced_unused": 10}


def test_guessing_the_password_at_regenerate_is_under_the_login_lockout(settings):
    user = UserFactory()
    enrolled(user)
    for _ in range(settings.LOGIN_LOCKOUT_THRESHOLD):
        with pytest.raises(two_step.TwoStepRefused):
            two_step.recovery_codes_regenerate(actor=user, password="guess")
    with pytest.raises(LockedOut, match="Regenerating recovery codes is locked"):
        two_step.recovery_codes_regenerate(actor=user, password=PASSWORD)


def test_the_lockout_shows_on_the_page_not_as_an_error_page(client, settings):
    user = UserFactory()
    enrolled(user)
    client.force_login(user)
    for _ in range(settings.LOGIN_LOCKOUT_THRESHOLD):
        client.post(
            ACCOUNT, {"action": "totp-remove", "remove-password": "guess", "remove-code": "1"}
        )
    response = client.post(
        ACCOUNT, {"action": "totp-remove", "remove-password": PASSWORD, "remove-code": "1"}
    )
    assert response.status_code == 400
    assert "Removing two-step verification is locked" in response.content.decode()
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def test_removing_needs_the_password_and_a_current_code(client, team):
    user = team[Role.COMMITTEE_CHAIR]
    _, codes = enrolled(user)
    client.force_login(user)
    response = client.post(
        ACCOUNT, {"action": "totp-remove", "remove-password": PASSWORD, "remove-code": "zzzzzzzz"}
    )
    assert response.status_code == 400
    assert (
        "does not match a current app code or an unused recovery code" in response.content.decode()
    )
    response = client.post(
        ACCOUNT, {"action": "totp-remove", "remove-password": "wrong", "remove-code": codes[0]}
    )
    assert "Wrong password: two-step verification is still on." in response.content.decode()
    assert StaticToken.objects.filter(device__user=user).count() == 10  # the code was not tried

    StaticDevice.objects.filter(user=user).update(throttling_failure_count=0)
    response = client.post(
        ACCOUNT,
        {"action": "totp-remove", "remove-password": PASSWORD, "remove-code": codes[0]},
        follow=True,
    )
    page = response.content.decode()
    assert "Two-step verification removed" in page and "Set up an authenticator app" in page
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert not StaticDevice.objects.filter(user=user).exists()
    # Signing asks for the password only again.
    assert sign(team, in_review(team), Role.COMMITTEE_CHAIR, "review").pk


def test_removing_with_an_app_code(client):
    user = UserFactory()
    device, _ = enrolled(user)
    two_step.totp_remove(actor=user, password=PASSWORD, code=app_code(device, 1))
    assert not TOTPDevice.objects.filter(user=user).exists()
    with pytest.raises(ValidationError, match="nothing to remove"):
        two_step.totp_remove(actor=user, password=PASSWORD, code="123456")


# --- The audit trail ---------------------------------------------------------------------------


def test_each_step_is_audited_without_the_key_or_the_codes():
    user = UserFactory()
    device, codes = enrolled(user)
    new = two_step.recovery_codes_regenerate(actor=user, password=PASSWORD)
    two_step.second_factor_problem(user, new[0])
    two_step.totp_remove(actor=user, password=PASSWORD, code=new[1])
    trail = events(
        user,
        Action.OTP_DEVICE_SAVE,
        Action.OTP_DEVICE_DELETE,
        Action.RECOVERY_CODES_GENERATE,
        Action.RECOVERY_CODE_USED,
    )
    assert [e.action for e in trail] == [
        Action.OTP_DEVICE_SAVE,  # started
        Action.OTP_DEVICE_SAVE,  # confirmed, with its recovery codes
        Action.RECOVERY_CODES_GENERATE,
        Action.RECOVERY_CODE_USED,
        Action.OTP_DEVICE_DELETE,  # confirmed by a recovery code, said in this one event
    ]
    assert trail[1].after["confirmed"] is True
    assert trail[1].after["recovery_codes"] == 10
    assert trail[-1].before == {
        "device": device.pk,
        "name": "Authenticator app",
        "recovery_codes_left": 8,
    }
    secret = base64.b32encode(device.bin_key).decode()
    for event in trail:
        assert event.actor_user_id == user.pk
        for value in (device.key, secret, secret[:16], *codes, *new):
            assert value.lower() not in event.payload.lower()


# --- Nobody else's devices ---------------------------------------------------------------------


def test_another_user_never_sees_or_touches_someone_elses_device(client):
    owner, other = UserFactory(), UserFactory()
    pending = two_step.enrolment_start(actor=owner)
    client.force_login(other)
    page = client.get(ACCOUNT).content.decode()
    secret = two_step.secret_for_manual_entry(pending)
    assert secret not in page and "Set up an authenticator app" in page
    # The forms act on the signed-in user's own devices: there is no way to name another's.
    response = client.post(
        ACCOUNT, {"action": "totp-confirm", "confirm-code": app_code(pending), "user": owner.pk}
    )
    assert response.status_code == 400 and "Start the setup first" in response.content.decode()
    pending.refresh_from_db()
    assert not pending.confirmed

    device, codes = enrolled(owner)
    response = client.post(
        ACCOUNT,
        {
            "action": "totp-remove",
            "remove-password": PASSWORD,
            "remove-code": codes[0],
            "device": device.pk,
        },
    )
    assert "nothing to remove" in response.content.decode()
    response = client.post(ACCOUNT, {"action": "recovery-codes", "codes-password": PASSWORD})
    assert "Set up an authenticator app first" in response.content.decode()
    assert TOTPDevice.objects.filter(user=owner, confirmed=True).count() == 1
    assert StaticToken.objects.filter(device__user=owner).count() == 10
    assert not TOTPDevice.objects.filter(user=other).exists()


def test_the_account_page_is_never_cached(client):
    user = UserFactory()
    client.force_login(user)
    client.post(ACCOUNT, {"action": "totp-start"})
    assert "no-store" in client.get(ACCOUNT)["Cache-Control"]


def test_creating_a_token_still_works_beside_the_two_step_forms(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post(ACCOUNT, {"name": "CI pipeline"})
    assert response.status_code == 200 and 'id="new-token"' in response.content.decode()


def test_every_state_of_the_section_keeps_the_strict_content_security_policy(client):
    """Off, setting up (the QR code is a data: image, allowed by img-src) and on: no inline
    script and no style attribute."""
    user = UserFactory()
    client.force_login(user)
    pages = [client.get(ACCOUNT)]
    client.post(ACCOUNT, {"action": "totp-start"})
    pages.append(client.get(ACCOUNT))
    device = TOTPDevice.objects.get(user=user)
    pages.append(client.post(ACCOUNT, {"action": "totp-confirm", "confirm-code": app_code(device)}))
    pages.append(client.get(ACCOUNT))
    for response in pages:
        html = response.content.decode()
        assert " style=" not in html and "<style" not in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html)
        assert not re.search(r"\son[a-z]+=", html)
        assert "data:" in response["Content-Security-Policy"].split("img-src", 1)[1].split(";")[0]
