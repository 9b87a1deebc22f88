"""Login throttling (issue 11, items 2 and 9): repeated failed passwords lock the account and
the address, at the login page, the admin login and signing alike (one rule,
`governance.lockout`); the lockout is in the audit trail; concurrent wrong guesses at signing
are checked and counted one at a time."""

import io
import threading
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audits.models import AuditEvent
from audits.services import audit_export
from audits.verification import verify
from governance.lockout import LockedOut
from governance.models import User
from governance.roles import Role
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import ReauthFailure, Signature
from tests.api.helpers import client_for
from tests.factories import PASSWORD, UserFactory, make_team, settle

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


def log_in(client, username, password, *, url=LOGIN, address="127.0.0.1", **extra):
    return client.post(
        url, {"username": username, "password": password}, REMOTE_ADDR=address, **extra
    )


def assert_locked_page(response, minutes=15):
    page = response.content.decode()
    assert response.status_code == 429, page[:2000]
    assert "Too many failed attempts" in page
    assert f"try again in {minutes} minutes" in page
    assert response["Retry-After"] == str(minutes * 60)


def logged_in(client) -> bool:
    return SESSION_KEY in client.session


def expire_the_lock(settings) -> None:
    past = timezone.now() - timedelta(seconds=settings.LOGIN_LOCKOUT_COOLOFF + 1)
    AccessAttempt.objects.update(attempt_time=past)


# --- The login page and the admin login --------------------------------------------------------


def test_it_refuses_the_right_password_after_fifty_wrong_ones_at_the_login_page(client):
    user = UserFactory()
    for _ in range(50):
        log_in(client, user.username, "guess")
    response = log_in(client, user.username, PASSWORD)
    assert_locked_page(response)
    assert not logged_in(client)
    assert client.get("/").status_code == 302  # still the login page's


def test_it_refuses_the_right_password_after_fifty_wrong_ones_at_the_admin_login(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    for _ in range(50):
        log_in(client, admin.username, "guess", url=ADMIN_LOGIN)
    response = log_in(client, admin.username, PASSWORD, url=ADMIN_LOGIN)
    assert_locked_page(response)
    assert not logged_in(client)


def test_the_lock_starts_at_the_threshold_and_says_when_it_ends(client, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    settings.LOGIN_LOCKOUT_COOLOFF = 600
    user = UserFactory()
    for _ in range(2):
        refused = log_in(client, user.username, "guess")
        assert refused.status_code == 200 and "Log in" in refused.content.decode()
    assert_locked_page(log_in(client, user.username, "guess"), minutes=10)
    assert_locked_page(log_in(client, user.username, PASSWORD), minutes=10)
    assert not logged_in(client)


def test_one_address_is_locked_across_usernames(client):
    """An address has its own limit (LOGIN_LOCKOUT_ADDRESS_THRESHOLD, default 50)."""
    user = UserFactory()
    for n in range(49):
        log_in(client, f"guessed-name-{n}", "guess", address="203.0.113.7")
    assert log_in(client, user.username, PASSWORD, address="203.0.113.7").status_code == 302
    client.logout()
    log_in(client, "guessed-name-49", "guess", address="203.0.113.7")
    assert_locked_page(log_in(client, user.username, PASSWORD, address="203.0.113.7"))
    locked = AuditEvent.objects.filter(action="auth.locked_out").get()
    assert locked.after["ip_address"] == "203.0.113.7" and locked.after["failures"] == 50
    assert log_in(client, user.username, PASSWORD, address="198.51.100.2").status_code == 302
    assert logged_in(client)


def test_one_account_is_locked_across_addresses(client):
    user = UserFactory()
    for n in range(5):
        log_in(client, user.username, "guess", address=f"203.0.113.{n + 1}")
    assert_locked_page(log_in(client, user.username, PASSWORD, address="198.51.100.2"))
    assert not logged_in(client)


def test_the_address_is_the_audit_trails_so_a_forged_forwarded_for_does_not_escape(
    client, settings
):
    """Behind one trusted proxy the client is the hop the proxy wrote; what the client writes
    further left changes nothing (audits.middleware.client_ip, the one rule)."""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_LOCKOUT_ADDRESS_THRESHOLD = 6
    for n in range(6):
        log_in(
            client,
            f"guessed-name-{n}",
            "guess",
            address="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7",
        )
    user = UserFactory()
    forged = log_in(
        client,
        user.username,
        PASSWORD,
        address="10.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.7",
    )
    assert_locked_page(forged)
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    failed = AuditEvent.objects.filter(action="auth.login_failed").first()
    assert failed is not None and failed.ip_address == "203.0.113.7"


def test_the_lock_ends_after_the_cool_off(client, settings):
    user = UserFactory()
    for _ in range(5):
        log_in(client, user.username, "guess")
    assert_locked_page(log_in(client, user.username, PASSWORD))
    expire_the_lock(settings)
    assert log_in(client, user.username, PASSWORD).status_code == 302
    assert logged_in(client)


def test_a_successful_login_clears_the_count(client):
    user = UserFactory()
    for _ in range(4):
        log_in(client, user.username, "guess")
    assert log_in(client, user.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        log_in(client, user.username, "guess")
    assert log_in(client, user.username, PASSWORD).status_code == 302


def test_five_failed_logins_from_a_shared_address_do_not_lock_everyone_out(client):
    """Behind a hospital NAT, or a proxy TRUSTED_PROXY_COUNT does not name, everyone shares one
    address: as many failures as lock one account must not lock them all."""
    for n in range(5):
        refused = log_in(client, f"guessed-name-{n}", "guess", address="10.0.0.1")
        assert refused.status_code == 200 and "Log in" in refused.content.decode()
    user = UserFactory()
    assert log_in(client, user.username, PASSWORD, address="10.0.0.1").status_code == 302
    assert logged_in(client)


def test_the_address_limit_is_never_below_the_account_limit(client, settings):
    settings.LOGIN_LOCKOUT_ADDRESS_THRESHOLD = 2
    for n in range(4):
        log_in(client, f"guessed-name-{n}", "guess", address="203.0.113.7")
    user = UserFactory()
    assert log_in(client, user.username, PASSWORD, address="203.0.113.7").status_code == 302
    client.logout()
    log_in(client, "guessed-name-4", "guess", address="203.0.113.7")
    assert_locked_page(log_in(client, user.username, PASSWORD, address="203.0.113.7"))


def test_logging_in_to_ones_own_account_does_not_clear_the_addresss_failures(client, settings):
    """An insider with one valid account guesses four passwords of each colleague, logging in
    as themselves in between: their success clears their own failures only, so the colleagues'
    counts and the address's count go on."""
    settings.LOGIN_LOCKOUT_ADDRESS_THRESHOLD = 10
    insider = UserFactory()
    colleagues = UserFactory.create_batch(3)
    for colleague in colleagues[:2]:
        for _ in range(4):
            log_in(client, colleague.username, "guess", address="203.0.113.7")
        assert log_in(client, insider.username, PASSWORD, address="203.0.113.7").status_code == 302
        client.logout()
    # The first colleague's account kept its four failures: one more, from anywhere, locks it.
    log_in(client, colleagues[0].username, "guess", address="198.51.100.2")
    assert_locked_page(log_in(client, colleagues[0].username, PASSWORD, address="192.0.2.5"))
    # Two more guesses from the address make its tenth failure: it is locked for everyone.
    for _ in range(2):
        log_in(client, colleagues[2].username, "guess", address="203.0.113.7")
    assert_locked_page(log_in(client, insider.username, PASSWORD, address="203.0.113.7"))
    assert not logged_in(client)


def test_a_successful_login_clears_only_that_accounts_failures(client):
    insider, colleague = UserFactory(), UserFactory()
    for _ in range(4):
        log_in(client, colleague.username, "guess")
    for _ in range(3):
        log_in(client, insider.username, "guess")
    assert log_in(client, insider.username, PASSWORD).status_code == 302
    assert not AccessAttempt.objects.filter(username=insider.username).exists()
    counted = AccessAttempt.objects.filter(username=colleague.username)
    assert counted.aggregate(n=Sum("failures_since_start"))["n"] == 4


# --- The audit trail ---------------------------------------------------------------------------


def test_a_lockout_is_recorded_once_in_the_audit_trail(client):
    user = UserFactory()
    for _ in range(50):
        log_in(client, user.username, "guess", HTTP_USER_AGENT="attacker/1.0")
    log_in(client, user.username, PASSWORD)
    locked = AuditEvent.objects.filter(action="auth.locked_out").get()
    assert (locked.target_type, locked.target_id) == ("governance.user", str(user.pk))
    assert locked.actor_type == "anonymous" and locked.actor_user is None
    assert locked.after["username"] == user.username and locked.after["failures"] == 5
    assert locked.after["cool_off_seconds"] == 900
    assert locked.ip_address == "127.0.0.1" and locked.user_agent == "attacker/1.0"
    # Every attempt is a failed login; those refused during the lock say so.
    failed = AuditEvent.objects.filter(action="auth.login_failed").order_by("sequence")
    assert failed.count() == 51
    assert [e.after.get("refused") for e in failed][4:6] == [
        None,
        "locked out: the password was not checked",
    ]
    assert not AuditEvent.objects.filter(action="auth.login").exists()
    out = io.StringIO()
    audit_export(actor=None, project=None, out=out)
    assert '"action":"auth.locked_out"' in out.getvalue().replace(" ", "")
    assert verify().ok


def test_the_lockout_action_is_documented():
    from pathlib import Path

    from django.conf import settings

    assert "`auth.locked_out`" in (Path(settings.BASE_DIR) / "docs" / "audit.md").read_text()


# --- Signing shares the rule -------------------------------------------------------------------


@pytest.fixture
def gate_in_review(team):
    settle(team, "planning")
    return gate_services.gate_submit(
        actor=team.creator, gate=team.project.gates.get(phase="planning")
    )


def sign_page(client, team, password):
    return client.post(
        reverse("gate-sign", args=[team.project.slug, "planning"]),
        {"role": "committee_chair", "meaning": "approve", "password": password},
    )


def test_a_login_lockout_blocks_signing(client, team, gate_in_review):
    chair = team[Role.COMMITTEE_CHAIR]
    client.force_login(chair)  # the chair's session, opened before the attack
    attacker = Client()
    for _ in range(5):
        log_in(attacker, chair.username, "guess", address="198.51.100.9")
    page = sign_page(client, team, PASSWORD)
    assert page.status_code == 400
    assert "Signing is locked after repeated failed authentication" in page.content.decode()
    assert "try again in 15 minutes" in page.content.decode()
    assert not Signature.objects.exists()
    with pytest.raises(LockedOut, match="Signing is locked"):
        gate_services.signoff_create(
            actor=chair,
            gate=gate_in_review,
            role="committee_chair",
            meaning="approve",
            password=PASSWORD,
        )


def test_wrong_passwords_at_signing_lock_the_login(client, team, gate_in_review):
    chair = team[Role.COMMITTEE_CHAIR]
    client.force_login(chair)
    for _ in range(5):
        page = sign_page(client, team, "guess")
        assert "Re-authentication failed (wrong password)" in page.content.decode()
    page = sign_page(client, team, PASSWORD)
    assert "Signing is locked" in page.content.decode()
    assert AuditEvent.objects.filter(action="auth.locked_out", target_id=str(chair.pk)).count() == 1
    client.logout()
    assert_locked_page(log_in(client, chair.username, PASSWORD))
    assert not Signature.objects.exists()


def test_a_locked_signer_is_refused_without_a_password_check(team, gate_in_review, monkeypatch):
    chair = team[Role.COMMITTEE_CHAIR]
    for _ in range(5):
        with pytest.raises(gate_services.ReauthenticationFailed):
            gate_services.signoff_create(
                actor=chair,
                gate=gate_in_review,
                role="committee_chair",
                meaning="approve",
                password="guess",
            )
    checks = []
    monkeypatch.setattr(User, "check_password", lambda self, raw: checks.append(raw) or True)
    with pytest.raises(LockedOut):
        gate_services.signoff_create(
            actor=chair,
            gate=gate_in_review,
            role="committee_chair",
            meaning="approve",
            password=PASSWORD,
        )
    assert checks == []
    assert ReauthFailure.objects.count() == 5


def test_signing_does_not_clear_the_failures_of_other_accounts_from_the_address(
    client, team, gate_in_review
):
    """Re-authentication's success clears the signer's own failures, as a login does, and
    no one else's: a colleague guessed at from the same address stays counted."""
    colleague = UserFactory()
    for _ in range(4):
        log_in(Client(), colleague.username, "guess")  # the signer's address, 127.0.0.1
    client.force_login(team[Role.COMMITTEE_CHAIR])
    assert sign_page(client, team, PASSWORD).status_code == 302
    assert Signature.objects.count() == 1
    log_in(Client(), colleague.username, "guess", address="198.51.100.2")
    assert_locked_page(log_in(Client(), colleague.username, PASSWORD))


def test_signing_over_the_api_answers_429_when_locked(team, gate_in_review):
    client = client_for(team[Role.COMMITTEE_CHAIR])
    url = f"/api/v1/projects/{team.project.slug}/gates/planning/signoffs/"
    body = {"role": "committee_chair", "meaning": "approve"}
    for _ in range(5):
        assert client.post(url, {**body, "password": "x"}, format="json").status_code == 403
    locked = client.post(url, {**body, "password": PASSWORD}, format="json")
    assert locked.status_code == 429
    error = locked.json()["error"]
    assert error["code"] == "locked_out" and "Signing is locked" in error["message"]
    assert locked["Retry-After"] == "900"


# --- Changing one's password shares the rule ----------------------------------------------------

NEW_PASSWORD = "a-new-long-passphrase-42"


def change_password(client, old_password):
    return client.post(
        reverse("admin:password_change"),
        {
            "old_password": old_password,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )


def test_wrong_old_passwords_at_the_admin_password_change_lock_it(client):
    """The old-password field is a password check like any other: thirty guesses there are not
    thirty free tries, and the fifth failure locks the account everywhere."""
    user = UserFactory(is_staff=True)
    client.force_login(user)
    for _ in range(5):
        page = change_password(client, "guess")
        assert page.status_code == 200
        assert "Your old password was entered incorrectly" in page.content.decode()
    page = change_password(client, PASSWORD)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Password change is locked after repeated failed authentication" in text
    assert "try again in 15 minutes" in text
    user.refresh_from_db()
    assert user.check_password(PASSWORD) and not user.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action="auth.locked_out", target_id=str(user.pk)).count() == 1
    client.logout()
    assert_locked_page(log_in(client, user.username, PASSWORD))


def test_a_login_lockout_blocks_the_admin_password_change(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)  # a session opened before the attack
    for _ in range(5):
        log_in(Client(), user.username, "guess", address="198.51.100.9")
    page = change_password(client, PASSWORD)
    assert page.status_code == 200
    assert "Password change is locked" in page.content.decode()
    user.refresh_from_db()
    assert not user.check_password(NEW_PASSWORD)


def test_the_right_old_password_changes_it_and_clears_the_count(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    for _ in range(4):
        change_password(client, "guess")
    assert change_password(client, PASSWORD).status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not AccessAttempt.objects.filter(username=user.username).exists()


# --- Concurrency (item 9) ----------------------------------------------------------------------


def test_thirty_concurrent_wrong_signings_count_no_more_than_the_threshold(postgres, live_db):
    """Each attempt locks the signer's row before it checks the lockout, then the password,
    then counts the failure: 30 simultaneous guesses are tried one at a time, five are
    checked, and the other 25 are refused as locked without a password check."""
    team = make_team()
    settle(team, "planning")
    gate = gate_services.gate_submit(
        actor=team.creator, gate=team.project.gates.get(phase="planning")
    )
    chair = team[Role.COMMITTEE_CHAIR]
    barrier = threading.Barrier(30)
    outcomes: list[str] = []

    def attempt():
        try:
            barrier.wait()
            gate_services.signoff_create(
                actor=chair, gate=gate, role="committee_chair", meaning="approve", password="x"
            )
            outcomes.append("signed")
        except LockedOut:
            outcomes.append("locked")
        except PermissionDenied as exc:
            outcomes.append(f"failed: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 30
    assert outcomes.count("locked") == 25, outcomes
    assert ReauthFailure.objects.filter(user=chair).count() == 5
    counted = AccessAttempt.objects.filter(username=chair.username)
    assert counted.aggregate(n=Sum("failures_since_start"))["n"] == 5
    assert AuditEvent.objects.filter(action="signature.reauth_failed").count() == 5
    assert AuditEvent.objects.filter(action="auth.locked_out").count() == 1
    with pytest.raises(LockedOut):
        gate_services.signoff_create(
            actor=chair, gate=gate, role="committee_chair", meaning="approve", password=PASSWORD
        )
    assert not Signature.objects.exists()
