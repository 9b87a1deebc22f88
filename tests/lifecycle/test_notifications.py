"""E-mail notifications (issue 12, item 10): who is told what, the opt-out, nothing sent for a
change that rolls back, retries, and one delivery through a real SMTP server (aiosmtpd)."""

import os
import smtplib
import socket
import subprocess
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.db import transaction
from django.urls import reverse

from audits.models import AuditEvent
from governance import services as governance_services
from governance.models import User
from governance.notification_settings import notification_settings_update
from governance.roles import Role
from lifecycle import notifications
from lifecycle.checklists import services as checklist_services
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Signature
from lifecycle.gates.readiness import readiness_of
from lifecycle.phases import Phase
from tests.factories import PASSWORD, pass_gate, settle, sign

pytestmark = pytest.mark.django_db

SITE = "https://governance.hospital.test"


@pytest.fixture(autouse=True)
def _mail_settings(settings, in_process_tasks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = SITE
    settings.EMAIL_SUBJECT_PREFIX = "[LLM governance] "
    settings.DEFAULT_FROM_EMAIL = "LLM governance <governance@hospital.test>"


def planning_item(team):
    return team.project.checklist_items.filter(phase=Phase.PLANNING).order_by("position").first()


def planning_gate(team):
    return team.project.gates.get(phase=Phase.PLANNING)


def recipients() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


def to(user: User) -> list[mail.EmailMessage]:
    return [message for message in mail.outbox if message.to == [user.email]]


# --- An item is assigned ---


def test_it_tells_the_assignee_with_a_link_to_the_item(team, django_capture_on_commit_callbacks):
    item, assignee = planning_item(team), team[Role.CLINICAL_LEAD]
    with django_capture_on_commit_callbacks(execute=True):
        checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=assignee)
    assert recipients() == [assignee.email]
    message = mail.outbox[0]
    assert message.subject == (
        f"[LLM governance] Assigned to you: {item.title} ({team.project.name})"
    )
    assert message.from_email == "LLM governance <governance@hospital.test>"
    link = f"{SITE}/projects/{team.project.slug}/phases/planning/#item-{item.key}"
    assert link in message.body
    assert team.creator.get_full_name() in message.body
    assert f"{SITE}{reverse('account-notifications')}" in message.body  # how to opt out


def test_it_says_nothing_to_whoever_assigns_themselves_or_when_nothing_changes(
    team, django_capture_on_commit_callbacks
):
    item, assignee = planning_item(team), team[Role.CLINICAL_LEAD]
    own = team.project.checklist_items.get(key="planning.clinical-needs-alignment")
    checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=assignee)
    with django_capture_on_commit_callbacks(execute=True):
        # The same assignee again; cleared; an item of their own role taken by the assignee.
        checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=assignee)
        checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=None)
        checklist_services.checklist_item_assign(actor=assignee, item=own, assignee=assignee)
    assert mail.outbox == []


@pytest.mark.parametrize(
    "change",
    [{"email_notifications": False}, {"email": ""}, {"is_active": False}],
    ids=["opted out", "no address", "inactive"],
)
def test_it_skips_people_who_opted_out_have_no_address_or_are_inactive(
    team, change, django_capture_on_commit_callbacks
):
    assignee = team[Role.CLINICAL_LEAD]
    item = planning_item(team)
    if "is_active" not in change:
        User.objects.filter(pk=assignee.pk).update(**change)
        assignee.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=assignee)
        if "is_active" in change:
            User.objects.filter(pk=assignee.pk).update(**change)  # between queueing and sending
    assert mail.outbox == []


def test_an_opt_out_between_queueing_and_sending_is_respected(
    team, django_capture_on_commit_callbacks
):
    assignee = team[Role.CLINICAL_LEAD]
    with django_capture_on_commit_callbacks() as callbacks:
        checklist_services.checklist_item_assign(
            actor=team.creator, item=planning_item(team), assignee=assignee
        )
    assert len(callbacks) == 1  # queued for after the commit, not sent inside the transaction
    notification_settings_update(actor=assignee, email_notifications=False)
    callbacks[0]()
    assert mail.outbox == []


def test_nothing_is_sent_when_the_transaction_rolls_back(team, django_capture_on_commit_callbacks):
    item = planning_item(team)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        checklist_services.checklist_item_assign(
            actor=team.creator, item=item, assignee=team[Role.CLINICAL_LEAD]
        )
        raise RuntimeError("a later step of the same change failed")
    assert callbacks == [] and mail.outbox == []
    item.refresh_from_db()
    assert item.assignee is None


def test_user_text_never_reaches_a_header_with_a_line_break(
    team, django_capture_on_commit_callbacks
):
    item = planning_item(team)
    type(item).objects.filter(pk=item.pk).update(title='Bias & "fairness"\r\nBcc: evil@x.test')
    item.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        checklist_services.checklist_item_assign(
            actor=team.creator, item=item, assignee=team[Role.CLINICAL_LEAD]
        )
    message = mail.outbox[0]
    assert "\n" not in message.subject and "\r" not in message.subject
    assert "Bcc" not in message.message()  # no forged header
    assert message.recipients() == [team[Role.CLINICAL_LEAD].email]
    # Plain text: the title is as typed, not HTML-escaped.
    assert 'Bias & "fairness"' in message.body and "&amp;" not in message.body


def test_subject_lines_are_one_line_and_bounded():
    line = notifications.subject_line("A\r\nB\tC " + "x" * 500)
    assert line.startswith("[LLM governance] A B C x")
    assert len(line) == notifications.SUBJECT_MAX and line.endswith("…")


# --- Gates (the public functions the gate services call) ---


def test_a_gate_in_review_asks_each_member_whose_approval_it_needs(
    team, django_capture_on_commit_callbacks
):
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team), note="Ready.")
    required = readiness_of(gate).required_roles
    # One member holds two required roles: one e-mail naming both.
    first, second = required[0], required[1]
    governance_services.membership_add(
        actor=team.creator, project=team.project, user=team[first], role=second
    )
    with django_capture_on_commit_callbacks(execute=True):
        notifications.gate_entered_review(gate)
    assert recipients() == sorted(team[role].email for role in required)
    both = to(team[first])[0]
    assert Role(first).label in both.body and Role(second).label in both.body
    assert both.subject == (
        f"[LLM governance] Your signature is needed: {team.project.name}, Planning gate"
    )
    assert f"{SITE}/projects/{team.project.slug}/phases/planning/#gate" in both.body
    assert "Submission note: Ready." in both.body
    # Nobody else: not the leads, the auditor, the committee member, nor the outsider.
    for role in set(Role) - set(required):
        assert to(team[role]) == []


def test_a_gate_in_review_does_not_ask_who_already_signed(team, django_capture_on_commit_callbacks):
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team))
    required = readiness_of(gate).required_roles
    sign(team, gate, required[0])
    with django_capture_on_commit_callbacks(execute=True):
        notifications.gate_entered_review(gate)
    assert recipients() == sorted(team[role].email for role in required[1:])


def test_an_approved_gate_tells_the_leads_and_that_the_next_phase_opened(
    team, django_capture_on_commit_callbacks
):
    pass_gate(team, Phase.PLANNING)
    gate = planning_gate(team)
    with django_capture_on_commit_callbacks(execute=True):
        notifications.gate_decided(gate)
    assert recipients() == sorted([team.creator.email, team[Role.PROJECT_LEAD].email])
    message = mail.outbox[0]
    assert message.subject == f"[LLM governance] Planning gate approved: {team.project.name}"
    assert (
        "was approved" in message.body
        and f"The {Phase.DATA.label} phase is now open." in message.body
    )


def test_a_rejected_gate_tells_the_leads_why_but_not_the_lead_who_rejected_it(
    team, django_capture_on_commit_callbacks
):
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team))
    sign(team, gate, Role.PROJECT_LEAD, "reject", reason="The intended use is too broad.")
    gate.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        notifications.gate_decided(gate)
    assert recipients() == [team.creator.email]
    message = mail.outbox[0]
    assert "changes requested" in message.subject
    assert "Reason: The intended use is too broad." in message.body


def test_a_gate_still_in_review_tells_nobody_it_was_decided(
    team, django_capture_on_commit_callbacks
):
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team))
    with django_capture_on_commit_callbacks(execute=True):
        notifications.gate_decided(gate)
    assert mail.outbox == []


def test_a_reopened_gate_tells_the_leads_and_the_signers_it_invalidated(
    team, django_capture_on_commit_callbacks
):
    pass_gate(team, Phase.PLANNING)
    gate = planning_gate(team)
    signatures = list(Signature.objects.filter(gate=gate))
    with django_capture_on_commit_callbacks(execute=True):
        notifications.gate_reopened(
            gate, "evidence “Risk log” was withdrawn", invalidated=signatures, by=team.creator
        )
    signers = {s.signer.email for s in signatures}
    # Not the lead who made the change; the other lead and every invalidated signer.
    assert recipients() == sorted(signers | {team[Role.PROJECT_LEAD].email})
    for signature in signatures:
        body = to(signature.signer)[0].body
        assert "evidence “Risk log” was withdrawn" in body
        assert f"Yours ({Role(signature.role).label})" in body
    lead = to(team[Role.PROJECT_LEAD])[0]
    assert lead.subject == f"[LLM governance] Planning gate reopened: {team.project.name}"
    assert f"{len(signatures)} signature(s) no longer count" in lead.body


# --- Sending: retries and the job's registration ---


def _run_job(monkeypatch, user, error, *, eager: bool):
    """Run the sending job once as a worker (or in-process) would, its send failing with `error`;
    return what it returned or raised and the countdown of a requested retry."""
    retried: list[float] = []

    def fail(self, *args, **kwargs):
        raise error

    def retry(*, exc, countdown):
        retried.append(countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(mail.EmailMessage, "send", fail)
    monkeypatch.setattr(notifications.send_notification, "retry", retry)
    task = notifications.send_notification
    task.push_request(retries=0, is_eager=eager)
    try:
        return task.run(user.pk, "[LLM governance] Subject", "Body"), retried
    except Retry as exc:
        return exc, retried
    finally:
        task.pop_request()


def test_a_transient_smtp_error_is_retried_later_with_backoff(team, monkeypatch):
    outcome, retried = _run_job(
        monkeypatch, team.creator, smtplib.SMTPServerDisconnected("gone"), eager=False
    )
    assert isinstance(outcome, Retry) and len(retried) == 1 and 0 <= retried[0] <= 60


def test_a_permanent_refusal_is_not_retried(team, monkeypatch):
    refused = smtplib.SMTPRecipientsRefused({team.creator.email: (550, b"No such user")})
    outcome, retried = _run_job(monkeypatch, team.creator, refused, eager=False)
    assert outcome.startswith("failed") and retried == []


def test_in_process_the_job_tries_once_and_never_raises(team, monkeypatch):
    outcome, retried = _run_job(monkeypatch, team.creator, ConnectionRefusedError(), eager=True)
    assert outcome.startswith("failed") and retried == []


ROOT = Path(__file__).resolve().parents[2]


def test_web_and_worker_processes_know_the_sending_job():
    probe = (
        # Set up as any process is, without loading the URLs (and the services with them).
        "import django; django.setup()\n"
        "from config.celery import app\n"
        "web = 'lifecycle.send_notification' in app.tasks\n"
        "app.loader.import_default_modules()\n"
        "print(web, 'lifecycle.send_notification' in app.tasks)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]


# --- Delivery through a real SMTP server ---


class Collector:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        self.received.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.content, policy=policy.default),
            )
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on 127.0.0.1 and a free port, with the SMTP backend pointed at it."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    yield handler
    controller.stop()


def test_an_assignment_is_delivered_through_a_real_smtp_server(
    team, smtp_server, django_capture_on_commit_callbacks
):
    item, assignee = planning_item(team), team[Role.CLINICAL_LEAD]
    with django_capture_on_commit_callbacks(execute=True):
        checklist_services.checklist_item_assign(actor=team.creator, item=item, assignee=assignee)
    assert len(smtp_server.received) == 1
    mail_from, rcpt_tos, message = smtp_server.received[0]
    assert rcpt_tos == [assignee.email]
    assert mail_from == "governance@hospital.test"
    assert message["To"] == assignee.email
    assert message["Subject"] == (
        f"[LLM governance] Assigned to you: {item.title} ({team.project.name})"
    )
    body = message.get_content()
    assert f"{SITE}/projects/{team.project.slug}/phases/planning/#item-{item.key}" in body


# --- The opt-out page ---


def test_it_turns_notifications_off_and_on_again_on_the_account_page(client, team):
    user = team[Role.CLINICAL_LEAD]
    client.force_login(user)
    url = reverse("account-notifications")
    page = client.get(url).content.decode()
    assert "E-mail notifications" in page and user.email in page
    assert 'name="email_notifications"' in page and "checked" in page

    response = client.post(url, {}, follow=True)  # an unticked box is not sent
    assert response.redirect_chain == [(url, 302)]
    assert "E-mail notifications are now off." in response.content.decode()
    user.refresh_from_db()
    assert user.email_notifications is False
    event = AuditEvent.objects.filter(action="user.notifications_update").get()
    assert event.actor_user == user
    assert (event.before, event.after) == (
        {"email_notifications": True},
        {"email_notifications": False},
    )

    client.post(url, {"email_notifications": "on"})
    user.refresh_from_db()
    assert user.email_notifications is True
    assert AuditEvent.objects.filter(action="user.notifications_update").count() == 2


def test_saving_the_same_setting_records_nothing(team):
    notification_settings_update(actor=team.creator, email_notifications=True)
    assert not AuditEvent.objects.filter(action="user.notifications_update").exists()


def test_the_page_warns_when_there_is_no_address(client, team):
    user = team[Role.CLINICAL_LEAD]
    User.objects.filter(pk=user.pk).update(email="")
    client.force_login(user)
    page = client.get(reverse("account-notifications")).content.decode()
    assert "No e-mail address on your account" in page


def test_the_page_needs_a_login(client, db):
    url = reverse("account-notifications")
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_service_refuses_anything_but_on_or_off(team):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="either on"):
        notification_settings_update(actor=team.creator, email_notifications="no")  # type: ignore[arg-type]
    team.creator.refresh_from_db()
    assert team.creator.email_notifications is True


# --- Settings ---


def _settings(**env: str) -> list[str] | str:
    probe = (
        "from django.conf import settings\n"
        "print(settings.EMAIL_BACKEND, settings.SITE_URL or '-', settings.EMAIL_SUBJECT_PREFIX)\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "SITE_URL"))}
    clean.pop("DEBUG", None)
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + probe],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x" * 50, **env},
        capture_output=True,
        text=True,
    )
    return out.stdout.split() if out.returncode == 0 else out.stderr


def test_development_prints_mail_and_production_sends_it_by_smtp():
    assert _settings(DEBUG="1") == [
        "django.core.mail.backends.console.EmailBackend",
        "http://127.0.0.1:8000",
        "[LLM",
        "governance]",
    ]
    production = _settings(DEBUG="0", ALLOWED_HOSTS=".hospital.org,governance.hospital.org")
    assert production[:2] == [
        "django.core.mail.backends.smtp.EmailBackend",
        "https://governance.hospital.org",
    ]
    assert _settings(DEBUG="0", SITE_URL="https://gov.example/")[1] == "https://gov.example"


def test_a_wrong_mail_setting_stops_the_process_with_its_name():
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL" in _settings(EMAIL_USE_TLS="1", EMAIL_USE_SSL="1")
    assert "SITE_URL must be an http(s) address" in _settings(SITE_URL="governance.org")


# --- End to end through the gate services ---
# The same events driven through gate_submit, signoff_create and a change to signed content:
# the gate services and signoffs.invalidate call the functions above.


def test_end_to_end_submitting_a_gate_asks_its_signers(team, django_capture_on_commit_callbacks):
    settle(team, Phase.PLANNING)
    with django_capture_on_commit_callbacks(execute=True):
        gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team))
    required = readiness_of(gate).required_roles
    assert recipients() == sorted(team[role].email for role in required)


def test_end_to_end_the_last_approval_tells_the_leads(team, django_capture_on_commit_callbacks):
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team))
    *first, last = readiness_of(gate).required_roles
    for role in first:
        sign(team, gate, role)
    with django_capture_on_commit_callbacks(execute=True):
        sign(team, gate, last)
    assert recipients() == sorted([team.creator.email, team[Role.PROJECT_LEAD].email])
    assert all("approved" in message.subject for message in mail.outbox)


def test_end_to_end_a_rejection_tells_the_leads_why(team, django_capture_on_commit_callbacks):
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team))
    with django_capture_on_commit_callbacks(execute=True):
        gate_services.signoff_create(
            actor=team[Role.COMMITTEE_CHAIR],
            gate=gate,
            role=Role.COMMITTEE_CHAIR,
            meaning="reject",
            reason="Privacy review missing.",
            password=PASSWORD,
        )
    assert recipients() == sorted([team.creator.email, team[Role.PROJECT_LEAD].email])
    assert all("Reason: Privacy review missing." in m.body for m in mail.outbox)


def test_end_to_end_a_change_that_reopens_an_approved_gate_tells_leads_and_signers(
    team, django_capture_on_commit_callbacks
):
    pass_gate(team, Phase.PLANNING)
    gate = planning_gate(team)
    signers = {s.signer.email for s in Signature.objects.filter(gate=gate)}
    item = team.project.checklist_items.filter(phase=Phase.PLANNING, required=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        checklist_services.evidence_add_note(actor=team.creator, item=item, note="Late addendum.")
    # The lead who changed it is not told; the other lead and every invalidated signer are.
    assert recipients() == sorted(signers | {team[Role.PROJECT_LEAD].email})
    assert all("reopened" in m.subject and item.title in m.body for m in mail.outbox)


def test_end_to_end_a_change_to_a_gate_in_review_asks_its_signers_again(
    team, django_capture_on_commit_callbacks
):
    settle(team, Phase.PLANNING)
    gate = gate_services.gate_submit(actor=team.creator, gate=planning_gate(team))
    required = readiness_of(gate).required_roles
    sign(team, gate, required[0])
    item = team.project.checklist_items.filter(phase=Phase.PLANNING, required=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        checklist_services.evidence_add_note(actor=team.creator, item=item, note="Addendum.")
    # The approval given stopped counting: every required role is asked for the new round.
    assert recipients() == sorted(team[role].email for role in required)
    assert all("(round 2)" in m.body for m in mail.outbox)
