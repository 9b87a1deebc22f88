"""Two-step verification in a real browser (issue 12, item 9): the chair sets up an
authenticator app on the account page, from the QR code's key, keeps the recovery codes, and
signs a gate with a code from the app."""

import base64

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from governance.roles import Role
from lifecycle.gates import services as gate_services
from lifecycle.gates.readiness import readiness_of
from tests.browser.test_committee import accessible, login
from tests.factories import PASSWORD, make_team, settle, sign

pytestmark = pytest.mark.django_db(transaction=True)


def app_code(shown_key: str, steps_ahead: int = 0) -> str:
    """What an authenticator app given `shown_key` (base32, in groups) displays."""
    key = base64.b32decode(shown_key.replace(" ", ""))
    return f"{totp(key, drift=steps_ahead):06d}"


def test_the_chair_sets_up_an_authenticator_app_and_signs_with_it(page):
    team = make_team()
    settle(team, "planning")
    gate = gate_services.gate_submit(
        actor=team.creator, gate=team.project.gates.get(phase="planning")
    )
    for role in readiness_of(gate).required_roles:
        if role != Role.COMMITTEE_CHAIR:
            sign(team, gate, role)
    chair = team[Role.COMMITTEE_CHAIR]

    login(page, chair)
    page.get_by_role("link", name="Account").click()
    section = page.locator("#two-step")
    assert "Signing a gate asks for your password only" in section.inner_text()
    section.get_by_role("button", name="Set up an authenticator app").click()
    section = page.locator("#two-step")
    qr = section.get_by_role("img", name="QR code holding the key of your authenticator app")
    qr.wait_for()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # CSP let the data: image in
    accessible(page, "account-two-step-setup")
    key = section.locator("#totp-secret").inner_text()

    section.get_by_label("Code from the app").fill("000000")
    section.get_by_role("button", name="Confirm").click()
    assert "That code does not match" in page.locator("#two-step .errorlist").inner_text()

    page.wait_for_timeout(1100)  # django-otp's slow-down after a wrong code: one second
    page.locator("#two-step").get_by_label("Code from the app").fill(app_code(key))
    page.locator("#two-step").get_by_role("button", name="Confirm").click()
    codes = page.locator("#recovery-codes li")
    codes.first.wait_for()
    assert codes.count() == 10
    assert "Store them now" in page.get_by_role("region", name="Your recovery codes").inner_text()
    accessible(page, "account-recovery-codes")
    assert TOTPDevice.objects.get(user=chair).confirmed

    page.goto("/account/")  # shown once: not when the page is opened again
    assert page.locator("#recovery-codes").count() == 0
    assert "10 unused recovery codes left" in page.locator("#two-step").inner_text()

    page.goto(f"/projects/{team.project.slug}/phases/planning/")
    page.get_by_role("button", name="Sign this gate…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Approved").check()
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign").click()
    dialog = page.get_by_role("dialog")
    assert "TOTP code is required" in dialog.locator(".errorlist").inner_text()

    dialog.get_by_label("Your password").fill(PASSWORD)
    # The confirming code was used up; the app's next code is accepted a step early.
    dialog.get_by_label("Authenticator code").fill(app_code(key, steps_ahead=1))
    dialog.get_by_role("button", name="Sign").click()
    page.wait_for_url("**/phases/planning/**")
    assert "Signed: " in page.locator(".messages").inner_text()
    assert "Approved" in page.get_by_role("heading", level=2).first.inner_text()
