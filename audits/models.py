"""The tamper-evident audit trail.

Each event is stored as `payload`: the canonical JSON serialisation of everything the event
says (chain, sequence, time, actor, action, target, before/after values, reason, request
context). `hash` is SHA-256 over the previous event's hash followed by the payload, so every
event seals the whole history before it. The payload is the record of truth; the few columns
beside it (sequence, time, actor, action, target) exist so the trail can be filtered with
indexes, and verification proves they agree with the sealed payload.

The database refuses UPDATE and DELETE on events (and TRUNCATE on PostgreSQL): see
`audits.triggers` and migration 0002.
"""

import json
from functools import cached_property
from typing import Any

from django.conf import settings
from django.db import models

from audits.chain import GENESIS_HASH, GLOBAL_CHAIN

__all__ = [
    "GENESIS_HASH",
    "GLOBAL_CHAIN",
    "Action",
    "ActorType",
    "AuditChain",
    "AuditEvent",
    "Report",
    "ReportFormat",
    "ReportKind",
    "ReportStatus",
]


class Action(models.TextChoices):
    """Every kind of event the trail records. Adding a service means adding its action."""

    PROJECT_CREATE = "project.create", "Project registered"
    PROJECT_UPDATE = "project.update", "Project details changed"
    MEMBERSHIP_ADD = "membership.add", "Role granted"
    MEMBERSHIP_REMOVE = "membership.remove", "Role removed"
    ITEM_UPDATE = "checklist_item.update", "Checklist item status changed"
    ITEM_ASSIGN = "checklist_item.assign", "Checklist item assigned"
    EVIDENCE_ADD = "evidence.add", "Evidence attached"
    EVIDENCE_WITHDRAW = "evidence.withdraw", "Evidence withdrawn"
    EVIDENCE_DOWNLOAD = "evidence.download", "Evidence downloaded"
    COMMENT_ADD = "comment.add", "Comment posted"
    GATE_SUBMIT = "gate.submit", "Gate submitted for review"
    GATE_START_REVIEW_CYCLE = "gate.start_review_cycle", "Periodic review started"
    GATE_EVIDENCE_DESIGNATE = "gate.evidence_designate", "Gate evidence designated"
    MODEL_VERSION_CREATE = "model_version.create", "Model version registered"
    DATASET_VERSION_CREATE = "dataset_version.create", "Dataset version registered"
    TEMPLATE_CREATE_VERSION = "template.create_version", "Checklist template version created"
    TEMPLATE_ACTIVATE = "template.activate", "Checklist template activated"
    TEMPLATE_ITEM_SAVE = "template_item.save", "Checklist template item saved"
    TEMPLATE_ITEM_DELETE = "template_item.delete", "Checklist template item removed"
    USER_CREATE = "user.create", "User account created"
    USER_UPDATE = "user.update", "User account changed"
    USER_PASSWORD_CHANGE = "user.password_change", "Password changed"
    OTP_DEVICE_SAVE = "user.otp_device_save", "Authenticator device enrolled or changed"
    OTP_DEVICE_DELETE = "user.otp_device_delete", "Authenticator device removed"
    RECOVERY_CODES_GENERATE = "user.recovery_codes_generate", "Recovery codes generated"
    RECOVERY_CODE_USED = "user.recovery_code_used", "Recovery code used"
    NOTIFICATIONS_UPDATE = "user.notifications_update", "E-mail notification settings changed"
    API_TOKEN_CREATE = "user.api_token_create", "API token created"
    API_TOKEN_REVOKE = "user.api_token_revoke", "API token revoked"
    LOGIN = "auth.login", "Logged in"
    LOGOUT = "auth.logout", "Logged out"
    LOGIN_FAILED = "auth.login_failed", "Failed login"
    LOCKED_OUT = "auth.locked_out", "Locked out after repeated failed authentication"
    SIGNATURE_CREATE = "signature.create", "Gate signed"
    REAUTH_FAILED = "signature.reauth_failed", "Failed re-authentication at signing"
    POLICY_CREATE_VERSION = "signoff_policy.create_version", "Sign-off policy version created"
    POLICY_ACTIVATE = "signoff_policy.activate", "Sign-off policy activated"
    POLICY_REQUIREMENT_SAVE = "signoff_requirement.save", "Sign-off requirement saved"
    POLICY_REQUIREMENT_DELETE = "signoff_requirement.delete", "Sign-off requirement removed"
    EVALUATION_START = "evaluation_run.start", "Evaluation uploaded"
    EVALUATION_SUCCEED = "evaluation_run.succeed", "Evaluation results attached"
    EVALUATION_FAIL = "evaluation_run.fail", "Evaluation failed"
    EVALUATION_REQUEUE = "evaluation_run.requeue", "Stuck evaluation queued again"
    CRITERION_CREATE = "gate_criterion.create", "Gate criterion added"
    CRITERION_UPDATE = "gate_criterion.update", "Gate criterion changed"
    CRITERION_DELETE = "gate_criterion.delete", "Gate criterion removed"
    AUDIT_EXPORT = "audit.export", "Audit trail exported"
    MODEL_FACTS_UPDATE = "model_facts.update", "Model facts changed"
    REPORT_REQUEST = "report.request", "Compliance report requested"
    REPORT_GENERATE = "report.generate", "Compliance report generated"
    REPORT_FAIL = "report.fail", "Compliance report failed"
    REPORT_DOWNLOAD = "report.download", "Compliance report downloaded"
    AUDIT_CHECKPOINT = "audit.checkpoint", "Audit chain checkpointed"
    MONITORING_PLAN_SAVE = "monitoring_plan.save", "Monitoring plan saved"
    MONITORING_BATCH_SUBMIT = "monitoring_batch.submit", "Monitoring batch received"
    MONITORING_BATCH_ANALYSE = "monitoring_batch.analyse", "Monitoring batch analysed"
    MONITORING_BATCH_FAIL = "monitoring_batch.fail", "Monitoring batch failed"
    MONITORING_REVIEW_OVERDUE = "monitoring.review_overdue", "Periodic review overdue"
    GATE_MONITORING_REOPEN = "gate.monitoring_reopen", "Monitoring gate reopened by monitoring"
    INCIDENT_OPEN = "incident.open", "Incident opened"
    INCIDENT_UPDATE = "incident.update", "Incident changed"
    INCIDENT_NOTE = "incident.note", "Incident note added"
    FEEDBACK_RECEIVE = "feedback.receive", "Feedback received"


class ActorType(models.TextChoices):
    USER = "user", "User"
    TOKEN = "token", "API token"
    SYSTEM = "system", "System job"
    ANONYMOUS = "anonymous", "Anonymous"


class AuditChain(models.Model):
    """The head of one hash chain: one per project, one global.

    Appends lock this row, so concurrent writers to a chain queue up instead of forking it.
    `length` and `head_hash` repeat the last event; verification checks that they agree, which
    is how a deleted tail is noticed between checkpoints.
    """

    key = models.CharField(max_length=120, unique=True)
    project = models.OneToOneField(
        "governance.Project",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_chain",
    )
    length = models.PositiveBigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class AuditEvent(models.Model):
    """One append-only, hash-chained entry of the audit trail."""

    # Indexes are few on purpose: each one is paid on every append.
    chain = models.ForeignKey(
        AuditChain, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    sequence = models.PositiveBigIntegerField()
    recorded_at = models.DateTimeField()
    actor_type = models.CharField(max_length=12, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_events",
        db_constraint=False,  # users are never deleted; the payload keeps the name anyway
        db_index=False,
    )
    actor_token_id = models.PositiveBigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=40, blank=True)
    payload = models.TextField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["chain", "sequence"]
        constraints = [
            # One event per position: two writers can never both append event N (a fork).
            models.UniqueConstraint(fields=["chain", "sequence"], name="audit_event_unique_seq"),
        ]
        indexes = [
            models.Index(fields=["chain", "recorded_at"], name="audit_event_chain_time"),
            models.Index(fields=["chain", "action"], name="audit_event_chain_action"),
            models.Index(fields=["target_type", "target_id"], name="audit_event_target"),
            models.Index(fields=["actor_user", "recorded_at"], name="audit_event_actor_time"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id}#{self.sequence} {self.action}"

    @cached_property
    def data(self) -> dict[str, Any]:
        """The sealed content of the event (see `audits.chain.build_payload`)."""
        return json.loads(self.payload)

    @property
    def actor_name(self) -> str:
        return self.data["actor_name"]

    @property
    def target_text(self) -> str:
        return self.data["target_text"]

    @property
    def before(self) -> Any:
        return self.data["before"]

    @property
    def after(self) -> Any:
        return self.data["after"]

    @property
    def reason(self) -> str:
        return self.data["reason"]

    @property
    def request_id(self) -> str:
        return self.data["request_id"]

    @property
    def ip_address(self) -> str | None:
        return self.data["ip"]

    @property
    def user_agent(self) -> str:
        return self.data["user_agent"]


class ReportKind(models.TextChoices):
    DOSSIER = "dossier", "Decision dossier"
    AUDIT = "audit", "Audit trail report"
    CHAI = "chai", "CHAI Applied Model Card"
    HTI1 = "hti1", "HTI-1 source attributes"


class ReportFormat(models.TextChoices):
    PDF = "pdf", "PDF"
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"
    XML = "xml", "XML"
    JSON = "json", "JSON"


class ReportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Generating"
    SUCCEEDED = "succeeded", "Ready"
    FAILED = "failed", "Failed"


def report_upload_to(report: "Report", filename: str) -> str:
    return f"reports/{report.project_id}/{report.pk}/{filename}"


class Report(models.Model):
    """One compliance report an auditor takes away: requested, generated by a background job,
    stored with its SHA-256 and sealed with the installation's report key (docs/reports.md).

    `seal` is the signed statement embedded in the file; `chain_length` and `chain_head` are
    the project's audit chain head it was generated at, which `verify_report --live` looks up.
    """

    project = models.ForeignKey(
        "governance.Project", on_delete=models.PROTECT, related_name="reports"
    )
    kind = models.CharField(max_length=10, choices=ReportKind.choices)
    format = models.CharField(max_length=6, choices=ReportFormat.choices)
    gate_phase = models.CharField(
        max_length=20, blank=True, help_text="A gate-only dossier: the phase of its gate."
    )
    since = models.DateField(null=True, blank=True)
    until = models.DateField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=ReportStatus.choices, default=ReportStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    progress_note = models.CharField(max_length=200, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    file = models.FileField(upload_to=report_upload_to, max_length=300, blank=True)
    file_name = models.CharField(max_length=200, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    seal = models.JSONField(null=True, blank=True)
    chain_length = models.PositiveBigIntegerField(null=True, blank=True)
    chain_head = models.CharField(max_length=64, blank=True)
    missing_facts = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["project", "-requested_at"], name="report_project_time")]

    def __str__(self) -> str:
        scope = f" ({self.gate_phase} gate)" if self.gate_phase else ""
        return f"{self.get_kind_display()}{scope}, {self.get_format_display()} #{self.pk}"
