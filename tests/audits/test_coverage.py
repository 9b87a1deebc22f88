"""Every mutating service and every mutating URL writes exactly one complete audit event.

Services come from the permission matrix (which itself fails on an undeclared service); URLs
come from the URL resolver, and a URL missing from the tables below fails the suite.
"""

import io

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audits.context import system_context
from audits.models import Action, AuditEvent
from audits.reports import services as report_services
from audits.verification import verify
from governance import services as governance_services
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ChecklistTemplate
from lifecycle.checklists.selectors import active_template
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate, SignOffPolicy
from lifecycle.monitoring import services as monitoring_services
from lifecycle.phases import Phase
from tests.factories import (
    PASSWORD,
    UserFactory,
    approve,
    make_team,
    make_versions,
    project_creator,
    settle,
    sign,
)
from tests.governance import test_permission_matrix as matrix
from tests.services import all_services
from tests.services import service as find_service

pytestmark = pytest.mark.django_db

SERVICE_ACTIONS = {
    "project_update": Action.PROJECT_UPDATE,
    "membership_add": Action.MEMBERSHIP_ADD,
    "membership_remove": Action.MEMBERSHIP_REMOVE,
    "checklist_item_update": Action.ITEM_UPDATE,
    "checklist_item_assign": Action.ITEM_ASSIGN,
    "evidence_add_file": Action.EVIDENCE_ADD,
    "evidence_add_link": Action.EVIDENCE_ADD,
    "evidence_add_note": Action.EVIDENCE_ADD,
    "evidence_withdraw": Action.EVIDENCE_WITHDRAW,
    "evidence_record_download": Action.EVIDENCE_DOWNLOAD,
    "comment_add": Action.COMMENT_ADD,
    "gate_submit": Action.GATE_SUBMIT,
    "gate_evidence_designate": Action.GATE_EVIDENCE_DESIGNATE,
    "signoff_create": Action.SIGNATURE_CREATE,
    "evaluation_run_start": Action.EVALUATION_START,
    "gate_criterion_create": Action.CRITERION_CREATE,
    "gate_criterion_update": Action.CRITERION_UPDATE,
    "gate_criterion_delete": Action.CRITERION_DELETE,
    "gate_start_review_cycle": Action.GATE_START_REVIEW_CYCLE,
    "model_version_create": Action.MODEL_VERSION_CREATE,
    "dataset_version_create": Action.DATASET_VERSION_CREATE,
    "project_create": Action.PROJECT_CREATE,
    "checklist_template_create_version": Action.TEMPLATE_CREATE_VERSION,
    "checklist_template_activate": Action.TEMPLATE_ACTIVATE,
    "template_item_save": Action.TEMPLATE_ITEM_SAVE,
    "template_item_delete": Action.TEMPLATE_ITEM_DELETE,
    "user_create": Action.USER_CREATE,
    "user_update": Action.USER_UPDATE,
    "user_set_password": Action.USER_PASSWORD_CHANGE,
    "signoff_policy_create_version": Action.POLICY_CREATE_VERSION,
    "signoff_policy_activate": Action.POLICY_ACTIVATE,
    "signoff_requirement_save": Action.POLICY_REQUIREMENT_SAVE,
    "signoff_requirement_delete": Action.POLICY_REQUIREMENT_DELETE,
    "otp_device_save": Action.OTP_DEVICE_SAVE,
    "otp_device_delete": Action.OTP_DEVICE_DELETE,
    "api_token_create": Action.API_TOKEN_CREATE,
    "api_token_revoke": Action.API_TOKEN_REVOKE,
    "audit_export": Action.AUDIT_EXPORT,
    "model_facts_update": Action.MODEL_FACTS_UPDATE,
    "report_request": Action.REPORT_REQUEST,
    "report_download": Action.REPORT_DOWNLOAD,
    "monitoring_plan_save": Action.MONITORING_PLAN_SAVE,
    # A batch registers its records as a dataset version and starts their evaluation (each
    # audited by its own service), then records the batch.
    "monitoring_batch_submit": (
        Action.DATASET_VERSION_CREATE,
        Action.EVALUATION_START,
        Action.MONITORING_BATCH_SUBMIT,
    ),
    "incident_report": Action.INCIDENT_OPEN,
    "incident_update": Action.INCIDENT_UPDATE,
    "incident_note_add": Action.INCIDENT_NOTE,
    "feedback_submit": Action.FEEDBACK_RECEIVE,
}


def assert_complete(event: AuditEvent, *, action: str, actor) -> None:
    assert event.action == action
    if actor is None:
        assert event.actor_user_id is None and event.actor_type in {"anonymous", "system"}
    else:
        assert event.actor_user_id == actor.pk and event.actor_type == "user"
        assert event.actor_name == (actor.get_full_name() or actor.username)
    assert (event.target_type and event.target_id != "") or action == Action.LOGIN_FAILED
    assert event.target_text
    assert len(event.hash) == 64 and len(event.prev_hash) == 64
    for key in ("before", "after", "reason", "request_id", "ip", "user_agent"):
        assert key in event.data


def one_new_event(before_id: int) -> AuditEvent:
    events = list(AuditEvent.objects.filter(id__gt=before_id))
    assert len(events) == 1, [e.action for e in events]
    return events[0]


def last_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


# --- Services ---------------------------------------------------------------------------------


def _function(name):
    return find_service(name)


@pytest.mark.parametrize("service", sorted(matrix.POLICY))
def test_each_project_service_writes_one_event(service):
    team = make_team()
    allowed = [r for r in matrix.POLICY[service] if r != matrix.OWNER]
    actor = team[allowed[0]]
    kwargs = matrix._arguments(service, team, Role.PRIVACY_OFFICER, allowed[0])
    mark = last_id()
    _function(service)(actor=actor, **kwargs)
    expected = SERVICE_ACTIONS[service]
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    events = list(AuditEvent.objects.filter(id__gt=mark).order_by("id"))
    assert [e.action for e in events] == expected
    for event, action in zip(events, expected, strict=True):
        assert_complete(event, action=action, actor=actor)
        assert event.chain.project == team.project
    assert verify().ok


def test_a_refused_call_writes_nothing():
    team = make_team()
    mark = last_id()
    with pytest.raises(Exception):  # noqa: B017 - PermissionDenied; the point is what remains
        gate_services.gate_submit(actor=team[Role.AUDITOR], gate=team.project.gates.first())
    assert last_id() == mark


def test_a_rolled_back_transaction_leaves_no_event():
    from django.db import transaction

    team = make_team()
    item = team.project.checklist_items.first()
    mark = last_id()
    with transaction.atomic():
        checklist_services.comment_add(actor=team.creator, item=item, body="Draft")
        transaction.set_rollback(True)
    assert last_id() == mark
    assert verify().ok


def test_global_services_write_one_event_each_on_the_global_chain(admin_user):
    def run(service, **kwargs):
        mark = last_id()
        result = _function(service)(actor=admin_user, **kwargs)
        event = one_new_event(mark)
        assert_complete(event, action=SERVICE_ACTIONS[service], actor=admin_user)
        expected_chain = "project:radiology-summariser" if service == "project_create" else "global"
        assert event.chain.key == expected_chain
        return result

    run("project_create", **matrix_project_fields())
    v2 = run("checklist_template_create_version", source=active_template(), version="2")
    item = v2.items.first()
    item.title = "Changed title"
    run("template_item_save", item=item)
    run("template_item_delete", item=v2.items.last())
    run("checklist_template_activate", template=v2)
    user = run("user_create", username="newcomer", password="a long enough passphrase 42")
    run("user_update", user=user, first_name="Nia", permissions=[add_project_permission()])
    run("user_set_password", user=user, password="another long passphrase 43")
    policy = run("signoff_policy_create_version", source=SignOffPolicy.objects.get(), version="2")
    requirement = policy.requirements.first()
    run("signoff_requirement_delete", requirement=requirement)
    requirement.pk = None
    run("signoff_requirement_save", requirement=requirement)
    run("signoff_policy_activate", policy=policy)
    device = run("otp_device_save", device=TOTPDevice(user=user, name="phone"))
    run("otp_device_delete", device=device)
    token, _ = run("api_token_create", name="pipeline")
    run("api_token_revoke", token=token)
    run("audit_export", project=None, out=io.StringIO())
    assert verify().ok


def matrix_project_fields() -> dict:
    return {
        "name": "Radiology summariser",
        "slug": "radiology-summariser",
        "clinical_setting": "Radiology",
        "intended_use": "Summarise reports.",
        "intended_users": "Referring physicians",
        "task_category": "clinical_documentation",
        "risk_tier": "low",
    }


def add_project_permission() -> Permission:
    return Permission.objects.get(codename="add_project")


def test_every_service_has_a_declared_action():
    assert set(all_services()) == set(SERVICE_ACTIONS)


# --- URLs -------------------------------------------------------------------------------------


def url_names(resolver=None, namespace="") -> set[str]:
    names = set()
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= url_names(pattern, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(namespace + pattern.name)
    return names


READ_ONLY = {
    "home",
    "report",
    "report-hti1",
    "report-key",
    "phase",
    "run",
    "audit-timeline",
    "api-schema",
    "api-docs",
    "project-detail",
    "signoff-policies",
    "monitoring",
    "healthz",
    "admin:index",
    "admin:app_list",
    "admin:autocomplete",
    "admin:jsi18n",
    "admin:view_on_site",
    "admin:password_change_done",
    "admin:otp_totp_totpdevice_config",
    "admin:otp_totp_totpdevice_qrcode",
    "admin:otp_totp_totpdevice_changelist",
}
MODELS = [
    "audits_auditevent",
    "governance_membership",
    "governance_project",
    "governance_user",
    "lifecycle_checklistitem",
    "lifecycle_checklisttemplate",
    "lifecycle_comment",
    "lifecycle_datasetversion",
    "lifecycle_evidence",
    "lifecycle_gate",
    "lifecycle_modelversion",
    "governance_signature",
    "governance_signoffpolicy",
    "otp_totp_totpdevice",
    "lifecycle_evaluationrun",
    "lifecycle_gatecriterion",
    "governance_apitoken",
]
READ_ONLY |= {f"admin:{model}_history" for model in MODELS}
# Admin changelists whose POST has no action that writes (no list_editable, no actions).
READ_ONLY |= {
    f"admin:{model}_changelist"
    for model in MODELS
    if model
    not in {
        "lifecycle_evidence",
        "lifecycle_gate",
        "lifecycle_checklisttemplate",
        "governance_signoffpolicy",
        "governance_apitoken",
    }
}
# Views the admin refuses: writes that only services may do, or never happen at all.
REFUSED = {
    "admin:audits_auditevent_add",
    "admin:audits_auditevent_change",
    "admin:audits_auditevent_delete",
    "admin:governance_project_delete",
    "admin:governance_membership_change",
    "admin:governance_user_delete",
    "admin:lifecycle_checklistitem_add",
    "admin:lifecycle_checklistitem_delete",
    "admin:lifecycle_checklisttemplate_add",
    "admin:lifecycle_checklisttemplate_delete",
    "admin:lifecycle_comment_change",
    "admin:lifecycle_comment_delete",
    "admin:lifecycle_datasetversion_change",
    "admin:lifecycle_datasetversion_delete",
    "admin:lifecycle_evidence_change",
    "admin:lifecycle_evidence_delete",
    "admin:lifecycle_gate_add",
    "admin:lifecycle_gate_change",
    "admin:lifecycle_gate_delete",
    "admin:lifecycle_modelversion_change",
    "admin:lifecycle_modelversion_delete",
    "admin:governance_signature_add",
    "admin:governance_signature_change",
    "admin:governance_signature_delete",
    "admin:governance_signoffpolicy_add",
    "admin:governance_signoffpolicy_delete",
    "admin:lifecycle_evaluationrun_change",
    "admin:lifecycle_evaluationrun_delete",
    "admin:governance_apitoken_change",
    "admin:governance_apitoken_delete",
}


class World:
    """A project with staff members in every role, a superuser, and useful objects."""

    def __init__(self):
        self.team = make_team()
        for user in [*self.team.members.values(), self.team.creator]:
            user.is_staff = True
            user.save()
        self.project = self.team.project
        self.lead = self.team.creator
        self.chair = self.team[Role.COMMITTEE_CHAIR]
        self.admin = UserFactory(is_staff=True, is_superuser=True, username="root")
        self.item = self.project.checklist_items.filter(phase=Phase.PLANNING).first()

    def settle_planning(self):
        for item in self.project.checklist_items.filter(phase=Phase.PLANNING):
            checklist_services.evidence_add_note(actor=self.lead, item=item, note="Done.")
            checklist_services.checklist_item_update(actor=self.lead, item=item, status="done")
        return self.project.gates.get(phase=Phase.PLANNING)


def _inline(prefix: str) -> dict:
    return {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}


def _action(action: str, *pks, **extra) -> dict:
    return {"action": action, "_selected_action": [str(pk) for pk in pks], **extra}


def _url(name, *args):
    return reverse(name, args=args)


def case_login(w):
    return (
        None,
        "post",
        _url("login"),
        {"username": w.lead.username, "password": PASSWORD},
        "auth.login",
    )


def case_login_failed(w):
    data = {"username": w.lead.username, "password": "wrong"}
    return None, "post", _url("login"), data, "auth.login_failed"


def case_logout(w):
    return w.lead, "post", _url("logout"), {}, "auth.logout"


def case_admin_login(w):
    data = {"username": w.lead.username, "password": PASSWORD}
    return None, "post", _url("admin:login"), data, "auth.login"


def case_admin_logout(w):
    return w.lead, "post", _url("admin:logout"), {}, "auth.logout"


def case_password_change(w):
    data = {
        "old_password": PASSWORD,
        "new_password1": "a brand new passphrase 77",
        "new_password2": "a brand new passphrase 77",
    }
    return w.lead, "post", _url("admin:password_change"), data, "user.password_change"


def case_evidence_download(w):
    evidence = checklist_services.evidence_add_file(
        actor=w.lead, item=w.item, upload=SimpleUploadedFile("dpia.txt", b"dpia")
    )
    return w.chair, "get", _url("evidence-download", evidence.pk), None, "evidence.download"


def case_report_request_page(w):
    data = {"kind": "audit", "format": "jsonl"}
    return w.chair, "post", _url("reports", w.project.slug), data, "report.request"


def case_report_download_page(w):
    with system_context("tests"):
        report = report_services.report_request(
            actor=None, project=w.project, kind="hti1", run_job=False
        )
        report_services.report_generate(report.pk)
    url = _url("report-download", w.project.slug, report.pk)
    return w.chair, "get", url, None, "report.download"


def case_model_facts_page(w):
    data = {"developer": "The hospital's AI team"}
    return w.lead, "post", _url("model-facts", w.project.slug), data, "model_facts.update"


def case_project_add(w):
    creator = project_creator()
    creator.is_staff = True
    creator.save()
    data = {
        **matrix_project_fields(),
        **_inline("gates"),
        **_inline("memberships"),
        **_inline("model_versions"),
        **_inline("dataset_versions"),
    }
    return creator, "post", _url("admin:governance_project_add"), data, "project.create"


def case_project_change(w):
    data = {
        **{k: v for k, v in matrix_project_fields().items() if k != "slug"},
        **_inline("gates"),
        **_inline("memberships"),
        **_inline("model_versions"),
        **_inline("dataset_versions"),
    }
    url = _url("admin:governance_project_change", w.project.pk)
    return w.lead, "post", url, data, "project.update"


def case_membership_add(w):
    data = {"project": w.project.pk, "user": UserFactory().pk, "role": "committee_member"}
    return w.lead, "post", _url("admin:governance_membership_add"), data, "membership.add"


def case_membership_delete(w):
    membership = w.project.memberships.get(role="committee_member")
    url = _url("admin:governance_membership_delete", membership.pk)
    return w.lead, "post", url, {"post": "yes"}, "membership.remove"


def case_item_change(w):
    data = {
        "status": "in_progress",
        "justification": "",
        "assignee": "",
        **_inline("evidence"),
        **_inline("comments"),
    }
    url = _url("admin:lifecycle_checklistitem_change", w.item.pk)
    return w.lead, "post", url, data, "checklist_item.update"


def case_evidence_add(w):
    data = {"item": w.item.pk, "kind": "link", "title": "DPIA", "url": "https://x.example/d"}
    return w.lead, "post", _url("admin:lifecycle_evidence_add"), data, "evidence.add"


def case_evidence_withdraw(w):
    evidence = checklist_services.evidence_add_note(actor=w.lead, item=w.item, note="Old")
    data = _action("withdraw", evidence.pk, apply="1", reason="Superseded")
    url = _url("admin:lifecycle_evidence_changelist")
    return w.lead, "post", url, data, "evidence.withdraw"


def case_comment_add(w):
    data = {"item": w.item.pk, "body": "Looks good."}
    return w.chair, "post", _url("admin:lifecycle_comment_add"), data, "comment.add"


def case_gate_submit(w):
    gate = w.settle_planning()
    url = _url("admin:lifecycle_gate_changelist")
    return w.lead, "post", url, _action("submit", gate.pk), "gate.submit"


def case_gate_submit_page(w):
    w.settle_planning()
    url = _url("gate-submit", w.project.slug, "planning")
    return w.lead, "post", url, {"note": "Ready."}, "gate.submit"


def case_gate_sign(w):
    gate = gate_services.gate_submit(actor=w.lead, gate=w.settle_planning())
    data = {"role": "committee_chair", "meaning": "approve", "password": PASSWORD}
    return w.chair, "post", _url("gate-sign", w.project.slug, gate.phase), data, "signature.create"


def case_gate_sign_with_a_recovery_code(w):
    gate = gate_services.gate_submit(actor=w.lead, gate=w.settle_planning())
    _recovery_code(w.chair, "abcd2345")
    data = {
        "role": "committee_chair",
        "meaning": "approve",
        "password": PASSWORD,
        "otp_token": "abcd2345",
    }
    url = _url("gate-sign", w.project.slug, gate.phase)
    return w.chair, "post", url, data, ("user.recovery_code_used", "signature.create")


def case_gate_sign_wrong_password(w):
    gate = gate_services.gate_submit(actor=w.lead, gate=w.settle_planning())
    data = {"role": "committee_chair", "meaning": "approve", "password": "wrong"}
    url = _url("gate-sign", w.project.slug, gate.phase)
    return w.chair, "post", url, data, "signature.reauth_failed"


def case_policy_new_version(w):
    data = _action("new_version", SignOffPolicy.objects.get().pk, apply="1", reason="2")
    url = _url("admin:governance_signoffpolicy_changelist")
    return w.admin, "post", url, data, "signoff_policy.create_version"


def case_policy_activate(w):
    draft = gate_services.signoff_policy_create_version(
        actor=w.admin, source=SignOffPolicy.objects.get(), version="2"
    )
    url = _url("admin:governance_signoffpolicy_changelist")
    return w.admin, "post", url, _action("activate", draft.pk), "signoff_policy.activate"


def case_policy_change(w):
    draft = gate_services.signoff_policy_create_version(
        actor=w.admin, source=SignOffPolicy.objects.get(), version="2"
    )
    first = draft.requirements.order_by("id").first()
    taken = set(
        draft.requirements.filter(phase=first.phase, risk_tier=first.risk_tier).values_list(
            "role", flat=True
        )
    )
    candidates = ("compliance_officer", "data_steward", "privacy_officer", "clinical_lead")
    free = next(r for r in candidates if r not in taken)
    data = {
        "requirements-TOTAL_FORMS": "1",
        "requirements-INITIAL_FORMS": "1",
        "requirements-0-id": str(first.pk),
        "requirements-0-policy": str(draft.pk),
        "requirements-0-phase": first.phase,
        "requirements-0-risk_tier": first.risk_tier,
        "requirements-0-role": free,
    }
    url = _url("admin:governance_signoffpolicy_change", draft.pk)
    return w.admin, "post", url, data, "signoff_requirement.save"


def case_otp_device_add(w):
    data = {
        "user": w.chair.pk,
        "name": "Phone",
        "key": "3132333435363738393031323334353637383930",
        "step": "30",
        "t0": "0",
        "digits": "6",
        "tolerance": "1",
        "drift": "0",
        "confirmed": "on",
        "throttling_failure_count": "0",
    }
    return w.admin, "post", _url("admin:otp_totp_totpdevice_add"), data, "user.otp_device_save"


def case_otp_device_change(w):
    from django_otp.plugins.otp_totp.models import TOTPDevice as Device

    device = Device.objects.create(user=w.chair, name="Phone")
    data = {
        "user": w.chair.pk,
        "name": "Work phone",
        "key": device.key,
        "step": "30",
        "t0": "0",
        "digits": "6",
        "tolerance": "1",
        "drift": "0",
        "confirmed": "on",
        "throttling_failure_count": "0",
    }
    url = _url("admin:otp_totp_totpdevice_change", device.pk)
    return w.admin, "post", url, data, "user.otp_device_save"


def case_otp_device_delete(w):
    from django_otp.plugins.otp_totp.models import TOTPDevice as Device

    device = Device.objects.create(user=w.chair, name="Phone")
    url = _url("admin:otp_totp_totpdevice_delete", device.pk)
    return w.admin, "post", url, {"post": "yes"}, "user.otp_device_delete"


def case_gate_start_review_cycle(w):
    for phase in Phase:
        for item in w.project.checklist_items.filter(phase=phase):
            checklist_services.evidence_add_note(actor=w.lead, item=item, note="Done.")
            checklist_services.checklist_item_update(actor=w.lead, item=item, status="done")
        gate = w.project.gates.get(phase=phase)
        gate_services.gate_submit(actor=w.lead, gate=gate)
        approve(w.team, w.project.gates.get(phase=phase))
    gate = Gate.objects.get(project=w.project, phase=Phase.MONITORING)
    url = _url("admin:lifecycle_gate_changelist")
    return w.chair, "post", url, _action("start_review_cycle", gate.pk), "gate.start_review_cycle"


def case_model_version_add(w):
    data = {"project": w.project.pk, "label": "v1", "base_model": "Llama", "adaptation": "rag"}
    url = _url("admin:lifecycle_modelversion_add")
    return w.lead, "post", url, data, "model_version.create"


def case_dataset_version_add(w):
    data = {
        "project": w.project.pk,
        "label": "test",
        "purpose": "test",
        "row_count": "10",
        "sha256": "b" * 64,
        "description": "",
    }
    url = _url("admin:lifecycle_datasetversion_add")
    return w.lead, "post", url, data, "dataset_version.create"


def case_template_new_version(w):
    data = _action("new_version", active_template().pk, apply="1", reason="2")
    url = _url("admin:lifecycle_checklisttemplate_changelist")
    return w.admin, "post", url, data, "template.create_version"


def case_template_activate(w):
    draft = checklist_services.checklist_template_create_version(
        actor=w.admin, source=active_template(), version="2"
    )
    url = _url("admin:lifecycle_checklisttemplate_changelist")
    return w.admin, "post", url, _action("activate", draft.pk), "template.activate"


def case_template_change(w):
    draft = checklist_services.checklist_template_create_version(
        actor=w.admin, source=active_template(), version="2"
    )
    first = draft.items.order_by("position").first()
    data = {
        "items-TOTAL_FORMS": "1",
        "items-INITIAL_FORMS": "1",
        "items-0-id": str(first.pk),
        "items-0-template": str(draft.pk),
        "items-0-phase": first.phase,
        "items-0-position": str(first.position),
        "items-0-key": first.key,
        "items-0-title": "A clearer title",
        "items-0-guidance": first.guidance,
        "items-0-owner_role": first.owner_role,
        "items-0-required": "on",
        "items-0-evidence_required": "on",
    }
    url = _url("admin:lifecycle_checklisttemplate_change", draft.pk)
    return w.admin, "post", url, data, "template_item.save"


def case_user_add(w):
    data = {
        "username": "newcomer",
        "first_name": "Nia",
        "last_name": "Obi",
        "email": "",
        "password1": "a long enough passphrase 42",
        "password2": "a long enough passphrase 42",
    }
    return w.admin, "post", _url("admin:governance_user_add"), data, "user.create"


def case_user_change(w):
    target = UserFactory(first_name="Old", last_name="Name", email="old@example.org")
    data = {
        "first_name": "New",
        "last_name": "Name",
        "email": "old@example.org",
        "is_active": "on",
        "new_password1": "",
        "new_password2": "",
    }
    url = _url("admin:governance_user_change", target.pk)
    return w.admin, "post", url, data, "user.update"


def case_evaluation_upload(w):
    model, dataset = _versions(w)
    upload = SimpleUploadedFile("r.jsonl", b'{"id": "a", "label": 1, "score": 0.9}\n')
    data = {
        "gate": w.project.gates.first().pk,
        "model_version": model.pk,
        "dataset_version": dataset.pk,
        "upload": upload,
        "task": "",
        "metrics_text": "auroc",
        "seed": "0",
        "resamples": "100",
    }
    return w.lead, "post", _url("admin:lifecycle_evaluationrun_add"), data, "evaluation_run.start"


def _criterion_data(w, threshold="0.8"):
    return {
        "gate": w.project.gates.first().pk,
        "metric": "auroc",
        "scope": "overall",
        "group_attribute": "",
        "bound": "value",
        "comparator": ">=",
        "threshold": threshold,
        "required": "on",
    }


def case_criterion_add(w):
    url = _url("admin:lifecycle_gatecriterion_add")
    return w.chair, "post", url, _criterion_data(w), "gate_criterion.create"


def _a_criterion(w):
    return gate_services.gate_criterion_create(
        actor=w.chair,
        gate=w.project.gates.first(),
        metric="auroc",
        comparator=">=",
        threshold=0.8,
    )


def case_criterion_change(w):
    url = _url("admin:lifecycle_gatecriterion_change", _a_criterion(w).pk)
    return w.chair, "post", url, _criterion_data(w, "0.9"), "gate_criterion.update"


def case_criterion_delete(w):
    url = _url("admin:lifecycle_gatecriterion_delete", _a_criterion(w).pk)
    return w.chair, "post", url, {"post": "yes"}, "gate_criterion.delete"


def case_item_status_page(w):
    item = w.project.checklist_items.get(key="planning.data-privacy-plan")
    url = _url("item-status", w.project.slug, item.key)
    data = {"status": "in_progress", "justification": ""}
    return w.lead, "post", url, data, "checklist_item.update"


def case_item_assign_page(w):
    item = w.project.checklist_items.get(key="planning.data-privacy-plan")
    url = _url("item-assign", w.project.slug, item.key)
    return (
        w.lead,
        "post",
        url,
        {"assignee": w.team[Role.PRIVACY_OFFICER].pk},
        "checklist_item.assign",
    )


def case_item_evidence_page(w):
    url = _url("item-evidence", w.project.slug, "planning.data-privacy-plan")
    data = {"kind": "file", "title": "DPIA", "file": SimpleUploadedFile("dpia.txt", b"dpia")}
    return w.lead, "post", url, data, "evidence.add"


def case_item_comment_page(w):
    url = _url("item-comment", w.project.slug, "planning.data-privacy-plan")
    return w.chair, "post", url, {"body": "Which template?"}, "comment.add"


def case_evidence_withdraw_page(w):
    item = w.project.checklist_items.get(key="planning.data-privacy-plan")
    evidence = checklist_services.evidence_add_note(actor=w.lead, item=item, note="Old")
    url = _url("evidence-withdraw", w.project.slug, evidence.pk)
    return w.lead, "post", url, {"reason": "Superseded"}, "evidence.withdraw"


def case_evaluation_upload_page(w):
    model, dataset = _versions(w)
    data = {
        "file": SimpleUploadedFile("r.jsonl", b'{"id": "a", "label": 1, "score": 0.9}\n'),
        "model_version": model.pk,
        "dataset_version": dataset.pk,
        "metrics": "auroc",
        "resamples": "100",
    }
    url = _url("evaluation-upload", w.project.slug, "planning")
    return w.lead, "post", url, data, "evaluation_run.start"


def case_token_create(w):
    data = {"name": "CI pipeline", "expires_in_days": "30"}
    return w.lead, "post", _url("account"), data, "user.api_token_create"


def case_admin_token_create(w):
    data = {"name": "Admin script", "expires_at_0": "", "expires_at_1": "", "read_only": "on"}
    return w.admin, "post", _url("admin:governance_apitoken_add"), data, "user.api_token_create"


def case_admin_token_revoke(w):
    token, _ = governance_services.api_token_create(actor=w.admin, name="old")
    url = _url("admin:governance_apitoken_changelist")
    return w.admin, "post", url, _action("revoke", token.pk), "user.api_token_revoke"


def case_token_revoke(w):
    token, _ = governance_services.api_token_create(actor=w.lead, name="old")
    return w.lead, "post", _url("token-revoke", token.pk), {}, "user.api_token_revoke"


def _runs_in_review(team) -> list[EvaluationRun]:
    """Two succeeded runs of the planning gate, then submitted with its default evidence."""
    settle(team, Phase.PLANNING)
    model, dataset = make_versions(team, rows=1)
    gate = team.project.gates.get(phase=Phase.PLANNING)
    runs = [
        EvaluationRun.objects.create(
            project=team.project,
            number=number,
            gate=gate,
            model_version=model,
            dataset_version=dataset,
            file="evaluations/r.jsonl",
            original_name="r.jsonl",
            size=1,
            sha256="d" * 64,
            status="succeeded",
            n_records=1,
            requested_by=team.creator,
        )
        for number in (1, 2)
    ]
    gate_services.gate_submit(actor=team.creator, gate=gate)
    return runs


def case_gate_evidence_page(w):
    runs = _runs_in_review(w.team)
    data = {"evidence_runs": [run.pk for run in runs], "reason": "Both test sets count."}
    url = _url("gate-evidence", w.project.slug, "planning")
    return w.lead, "post", url, data, "gate.evidence_designate"


def case_criterion_add_page(w):
    url = _url("gate-criteria", w.project.slug, "planning")
    data = {"action": "add", "new-expression": "ci_low(recall) >= 0.9", "new-required": "on"}
    return w.chair, "post", url, data, "gate_criterion.create"


def case_criterion_change_page(w):
    criterion = _a_criterion(w)
    prefix = f"criterion-{criterion.pk}"
    data = {
        "action": "save",
        "criterion": criterion.pk,
        f"{prefix}-expression": "ci_low(auroc) >= 0.75",
        f"{prefix}-required": "on",
    }
    url = _url("gate-criteria", w.project.slug, "planning")
    return w.chair, "post", url, data, "gate_criterion.update"


def case_criterion_delete_page(w):
    data = {"action": "delete", "criterion": _a_criterion(w).pk}
    url = _url("gate-criteria", w.project.slug, "planning")
    return w.chair, "post", url, data, "gate_criterion.delete"


def _policy_draft(w):
    return gate_services.signoff_policy_create_version(
        actor=w.admin, source=SignOffPolicy.objects.get(), version="2"
    )


def case_policy_new_version_page(w):
    url = _url("signoff-policy", SignOffPolicy.objects.get().version)
    data = {"action": "new-version", "version": "2"}
    return w.admin, "post", url, data, "signoff_policy.create_version"


def case_policy_requirement_add_page(w):
    draft = _policy_draft(w)
    data = {"action": "add-role", "phase": "planning", "risk_tier": "low", "role": "data_steward"}
    return w.admin, "post", _url("signoff-policy", draft.version), data, "signoff_requirement.save"


def case_policy_requirement_remove_page(w):
    draft = _policy_draft(w)
    data = {"action": "remove-role", "requirement": draft.requirements.first().pk}
    url = _url("signoff-policy", draft.version)
    return w.admin, "post", url, data, "signoff_requirement.delete"


def case_policy_activate_page(w):
    url = _url("signoff-policy", _policy_draft(w).version)
    return w.admin, "post", url, {"action": "activate"}, "signoff_policy.activate"


def case_notifications_off(w):
    # An unticked box posts nothing: that is "off" (every user starts with them on).
    return w.lead, "post", _url("account-notifications"), {}, "user.notifications_update"


def _app_code(device: TOTPDevice) -> str:
    """The code the user's authenticator app shows now."""
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{code:0{device.digits}d}"


def _confirmed_app(w) -> TOTPDevice:
    return TOTPDevice.objects.create(user=w.lead, name="Authenticator app", confirmed=True)


def _recovery_code(user, code: str) -> None:
    """`user` has a confirmed authenticator app and the recovery code `code`."""
    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    codes = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes.token_set.create(token=code)


def case_totp_start(w):
    return w.lead, "post", _url("account"), {"action": "totp-start"}, "user.otp_device_save"


def case_totp_confirm(w):
    device = TOTPDevice.objects.create(user=w.lead, name="Authenticator app", confirmed=False)
    data = {"action": "totp-confirm", "confirm-code": _app_code(device)}
    return w.lead, "post", _url("account"), data, "user.otp_device_save"


def case_recovery_codes_regenerate(w):
    _confirmed_app(w)
    data = {"action": "recovery-codes", "codes-password": PASSWORD}
    return w.lead, "post", _url("account"), data, "user.recovery_codes_generate"


def case_totp_remove(w):
    data = {
        "action": "totp-remove",
        "remove-password": PASSWORD,
        "remove-code": _app_code(_confirmed_app(w)),
    }
    return w.lead, "post", _url("account"), data, "user.otp_device_delete"


def case_totp_remove_with_a_recovery_code(w):
    _recovery_code(w.lead, "abcd2345")
    data = {"action": "totp-remove", "remove-password": PASSWORD, "remove-code": "abcd2345"}
    return w.lead, "post", _url("account"), data, "user.otp_device_delete"


def case_monitoring_plan_page(w):
    plan = matrix._deployed(w.team)
    data = {
        "baseline_run": plan.baseline_run.pk,
        "metrics": ["auroc"],
        "starts_on": plan.starts_on.isoformat(),
        "period_days": "7",
        "review_interval_days": "30",
        "resamples": "200",
        "cusum_k": "0.5",
        "cusum_h": "5",
        "psi_alert": "0.25",
    }
    url = _url("monitoring-plan", w.project.slug)
    return w.chair, "post", url, data, "monitoring_plan.save"


def case_monitoring_batch_upload_page(w):
    plan = matrix._deployed(w.team)
    data = {
        "file": SimpleUploadedFile("week.jsonl", matrix.BASELINE),
        "period_start": plan.starts_on.isoformat(),
        "model_version": "",
    }
    url = _url("monitoring-batch-upload", w.project.slug)
    actions = ("dataset_version.create", "evaluation_run.start", "monitoring_batch.submit")
    return w.lead, "post", url, data, actions


def case_incident_report_page(w):
    data = {"title": "A summary named the wrong patient", "description": "", "severity": "low"}
    return w.lead, "post", _url("incident-report", w.project.slug), data, "incident.open"


def _an_incident(w):
    return monitoring_services.incident_report(
        actor=w.lead, project=w.project, title="A summary named the wrong patient"
    )


def case_incident_update_page(w):
    incident = _an_incident(w)
    data = {
        "action": "update",
        "status": "investigating",
        "severity": "moderate",
        "owner": "",
        "resolution": "",
        "note": "Looking into it.",
    }
    url = _url("incident", w.project.slug, incident.number)
    return w.chair, "post", url, data, "incident.update"


def case_incident_note_page(w):
    incident = _an_incident(w)
    data = {"action": "note", "text": "The ward confirmed it."}
    url = _url("incident", w.project.slug, incident.number)
    return w.chair, "post", url, data, "incident.note"


MUTATING = {
    "monitoring-plan": [case_monitoring_plan_page],
    "monitoring-batch-upload": [case_monitoring_batch_upload_page],
    "incident-report": [case_incident_report_page],
    "incident": [case_incident_update_page, case_incident_note_page],
    "login": [case_login, case_login_failed],
    "logout": [case_logout],
    "admin:login": [case_admin_login],
    "admin:logout": [case_admin_logout],
    "admin:password_change": [case_password_change],
    "evidence-download": [case_evidence_download],
    "reports": [case_report_request_page],
    "report-download": [case_report_download_page],
    "model-facts": [case_model_facts_page],
    "admin:governance_project_add": [case_project_add],
    "admin:governance_project_change": [case_project_change],
    "admin:governance_membership_add": [case_membership_add],
    "admin:governance_membership_delete": [case_membership_delete],
    "admin:lifecycle_checklistitem_change": [case_item_change],
    "admin:lifecycle_evidence_add": [case_evidence_add],
    "admin:lifecycle_evidence_changelist": [case_evidence_withdraw],
    "admin:lifecycle_comment_add": [case_comment_add],
    "admin:lifecycle_gate_changelist": [
        case_gate_submit,
        case_gate_start_review_cycle,
    ],
    "gate-submit": [case_gate_submit_page],
    "account": [
        case_token_create,
        case_totp_start,
        case_totp_confirm,
        case_recovery_codes_regenerate,
        case_totp_remove,
        case_totp_remove_with_a_recovery_code,
    ],
    "account-notifications": [case_notifications_off],
    "gate-evidence": [case_gate_evidence_page],
    "gate-criteria": [
        case_criterion_add_page,
        case_criterion_change_page,
        case_criterion_delete_page,
    ],
    "signoff-policy": [
        case_policy_new_version_page,
        case_policy_requirement_add_page,
        case_policy_requirement_remove_page,
        case_policy_activate_page,
    ],
    "item-status": [case_item_status_page],
    "item-assign": [case_item_assign_page],
    "item-evidence": [case_item_evidence_page],
    "item-comment": [case_item_comment_page],
    "evidence-withdraw": [case_evidence_withdraw_page],
    "evaluation-upload": [case_evaluation_upload_page],
    "token-revoke": [case_token_revoke],
    "admin:governance_apitoken_add": [case_admin_token_create],
    "admin:governance_apitoken_changelist": [case_admin_token_revoke],
    "gate-sign": [
        case_gate_sign,
        case_gate_sign_with_a_recovery_code,
        case_gate_sign_wrong_password,
    ],
    "admin:governance_signoffpolicy_changelist": [case_policy_new_version, case_policy_activate],
    "admin:governance_signoffpolicy_change": [case_policy_change],
    "admin:otp_totp_totpdevice_add": [case_otp_device_add],
    "admin:otp_totp_totpdevice_change": [case_otp_device_change],
    "admin:otp_totp_totpdevice_delete": [case_otp_device_delete],
    "admin:lifecycle_evaluationrun_add": [case_evaluation_upload],
    "admin:lifecycle_gatecriterion_add": [case_criterion_add],
    "admin:lifecycle_gatecriterion_change": [case_criterion_change],
    "admin:lifecycle_gatecriterion_delete": [case_criterion_delete],
    "admin:lifecycle_modelversion_add": [case_model_version_add],
    "admin:lifecycle_datasetversion_add": [case_dataset_version_add],
    "admin:lifecycle_checklisttemplate_changelist": [
        case_template_new_version,
        case_template_activate,
    ],
    "admin:lifecycle_checklisttemplate_change": [case_template_change],
    "admin:governance_user_add": [case_user_add],
    "admin:governance_user_change": [case_user_change],
}


def test_every_url_is_classified():
    # REST endpoints are enumerated from the OpenAPI schema instead (API_CASES below).
    names = {name for name in url_names() if not name.startswith("api:")}
    classified = READ_ONLY | REFUSED | set(MUTATING)
    assert names - classified == set(), "classify the new URL in test_coverage.py"
    assert classified - names == set(), "a classified URL no longer exists"


def _url_cases() -> list:
    return [pytest.param(case, id=case.__name__) for cases in MUTATING.values() for case in cases]


@pytest.mark.parametrize("case", _url_cases())
def test_each_mutating_url_writes_one_complete_event(client, case):
    world = World()
    user, method, url, data, action = case(world)
    if user is not None:
        client.force_login(user)
    mark = last_id()
    response = getattr(client, method)(
        url, data, HTTP_USER_AGENT="pytest-browser/1.0", HTTP_X_REQUEST_ID="req-" + case.__name__
    )
    # A refused signing re-renders its dialog with the error (400); the event still counts.
    assert response.status_code in {200, 302, 400}, response.content.decode()[:3000]
    # One event, except where a request does two things that stand on their own (a recovery
    # code is used up even when the signing it authorised is then refused): a tuple of actions.
    actions = action if isinstance(action, tuple) else (action,)
    events = list(AuditEvent.objects.filter(id__gt=mark).order_by("id"))
    assert [e.action for e in events] == list(actions)
    for event, action in zip(events, actions, strict=True):
        actor = user
        if action == "auth.login":
            actor = world.lead
        if action == "auth.login_failed":
            actor = None
        assert_complete(event, action=action, actor=actor)
        assert event.request_id == "req-" + case.__name__ == response["X-Request-ID"]
        assert event.ip_address == "127.0.0.1"
        assert event.user_agent == "pytest-browser/1.0"
    assert verify().ok


def _refused_url(name: str, world: World) -> str:
    model = name.split(":")[1].rsplit("_", 1)[0]
    if name.endswith("_add"):
        return reverse(name)
    objects = {
        "audits_auditevent": lambda: AuditEvent.objects.first(),
        "governance_project": lambda: world.project,
        "governance_membership": lambda: world.project.memberships.first(),
        "governance_user": lambda: world.lead,
        "lifecycle_checklistitem": lambda: world.item,
        "lifecycle_checklisttemplate": lambda: ChecklistTemplate.objects.first(),
        "lifecycle_comment": lambda: checklist_services.comment_add(
            actor=world.lead, item=world.item, body="x"
        ),
        "lifecycle_datasetversion": lambda: evaluation_services.dataset_version_create(
            actor=world.lead,
            project=world.project,
            label="d",
            purpose="test",
            row_count=1,
            sha256="c" * 64,
        ),
        "lifecycle_evidence": lambda: checklist_services.evidence_add_note(
            actor=world.lead, item=world.item, note="n"
        ),
        "lifecycle_gate": lambda: world.project.gates.first(),
        "governance_signature": lambda: _a_signature(world),
        "governance_signoffpolicy": lambda: SignOffPolicy.objects.get(),
        "lifecycle_evaluationrun": lambda: _a_run(world),
        "governance_apitoken": lambda: governance_services.api_token_create(
            actor=world.admin, name="t"
        )[0],
        "lifecycle_modelversion": lambda: evaluation_services.model_version_create(
            actor=world.lead,
            project=world.project,
            label="m",
            base_model="b",
            adaptation="rag",
        ),
    }
    return reverse(name, args=[objects[model]().pk])


def _a_run(world: World):
    from django.core.files.base import ContentFile

    model, dataset = _versions(world)
    return evaluation_services.evaluation_run_start(
        actor=world.lead,
        gate=world.project.gates.first(),
        model_version=model,
        dataset_version=dataset,
        upload=ContentFile(b'{"id": "a"}\n', name="r.jsonl"),
        check_records=False,
    )


def _versions(world: World):
    model = evaluation_services.model_version_create(
        actor=world.lead, project=world.project, label="mv", base_model="b", adaptation="rag"
    )
    dataset = evaluation_services.dataset_version_create(
        actor=world.lead,
        project=world.project,
        label="dv",
        purpose="test",
        row_count=1,
        sha256="f" * 64,
    )
    return model, dataset


def _a_signature(world: World):
    gate = gate_services.gate_submit(actor=world.lead, gate=world.settle_planning())
    return sign(world.team, gate, Role.COMMITTEE_CHAIR, "review")


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_admin_urls_write_nothing(client, name):
    world = World()
    url = _refused_url(name, world)
    client.force_login(world.admin)  # even a superuser: these writes do not exist
    mark = last_id()
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 403
    assert last_id() == mark


# --- The REST API ------------------------------------------------------------------------------

API_READS_THAT_MATTER = {
    ("/api/v1/projects/{slug}/evidence/{id}/download/", "get"): "evidence.download",
    ("/api/v1/projects/{slug}/audit-events/export/", "get"): "audit.export",
    ("/api/v1/projects/{slug}/reports/{id}/download/", "get"): "report.download",
}
API_ACTIONS = {
    ("/api/v1/projects/{slug}/", "patch"): "project.update",
    ("/api/v1/projects/{slug}/dataset-versions/", "post"): "dataset_version.create",
    ("/api/v1/projects/{slug}/model-versions/", "post"): "model_version.create",
    ("/api/v1/projects/{slug}/evaluation-runs/", "post"): "evaluation_run.start",
    ("/api/v1/projects/{slug}/evidence/{id}/withdraw/", "post"): "evidence.withdraw",
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/", "post"): "gate_criterion.create",
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/{id}/", "patch"): "gate_criterion.update",
    ("/api/v1/projects/{slug}/gates/{phase}/criteria/{id}/", "delete"): "gate_criterion.delete",
    ("/api/v1/projects/{slug}/gates/{phase}/evidence/", "post"): "gate.evidence_designate",
    ("/api/v1/projects/{slug}/gates/{phase}/signoffs/", "post"): "signature.create",
    ("/api/v1/projects/{slug}/gates/{phase}/submit/", "post"): "gate.submit",
    ("/api/v1/projects/{slug}/items/{key}/", "patch"): "checklist_item.update",
    ("/api/v1/projects/{slug}/items/{key}/comments/", "post"): "comment.add",
    ("/api/v1/projects/{slug}/items/{key}/evidence/", "post"): "evidence.add",
    ("/api/v1/projects/{slug}/memberships/", "post"): "membership.add",
    ("/api/v1/projects/{slug}/memberships/{id}/", "delete"): "membership.remove",
    ("/api/v1/projects/{slug}/model-facts/", "patch"): "model_facts.update",
    ("/api/v1/projects/{slug}/reports/", "post"): "report.request",
    ("/api/v1/projects/{slug}/monitoring/plan/", "put"): "monitoring_plan.save",
    ("/api/v1/projects/{slug}/monitoring/batches/", "post"): (
        "dataset_version.create",
        "evaluation_run.start",
        "monitoring_batch.submit",
    ),
    ("/api/v1/projects/{slug}/incidents/", "post"): "incident.open",
    ("/api/v1/projects/{slug}/incidents/{number}/", "patch"): "incident.update",
    ("/api/v1/projects/{slug}/incidents/{number}/notes/", "post"): "incident.note",
    ("/api/v1/projects/{slug}/feedback/", "post"): "feedback.receive",
    **API_READS_THAT_MATTER,
}


def test_every_mutating_endpoint_has_a_declared_event():
    from tests.api.test_authorization_matrix import POLICY

    mutating = {op for op in POLICY if op[1] != "get"} | set(API_READS_THAT_MATTER)
    # Registering a project needs a global permission: covered by the service test above.
    mutating.discard(("/api/v1/projects/", "post"))
    assert mutating == set(API_ACTIONS)


@pytest.mark.parametrize(("path", "method"), sorted(API_ACTIONS))
def test_each_mutating_api_call_writes_one_complete_event(path, method):
    from tests.api.helpers import client_for
    from tests.api.test_authorization_matrix import POLICY

    allowed, build = POLICY[(path, method)]
    team = make_team()
    role = sorted(allowed)[0]
    team.acting_role = role
    call = build(team)
    client = client_for(team[role])
    mark = last_id()
    response = getattr(client, method)(
        call.path,
        call.data,
        format=call.format,
        HTTP_USER_AGENT="pipeline/2.0",
        HTTP_X_REQUEST_ID="ci-run-7",
    )
    assert response.status_code in {200, 201, 202, 204}, getattr(response, "data", None)
    # One event, or for a batch the events of the services it is made of (a tuple).
    expected = API_ACTIONS[(path, method)]
    actions = list(expected) if isinstance(expected, tuple) else [expected]
    events = list(AuditEvent.objects.filter(id__gt=mark).order_by("id"))
    assert [e.action for e in events] == actions
    for event in events:
        assert event.actor_user == team[role] and event.actor_type == "token"
        assert event.actor_token_id is not None
        assert (event.request_id, event.user_agent) == ("ci-run-7", "pipeline/2.0")
    assert verify().ok
