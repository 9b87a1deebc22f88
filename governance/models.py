"""Who may do what: users, projects, memberships and their object permissions."""

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from governance.roles import PROJECT_PERMISSIONS, Role
from lifecycle.phases import Phase


class User(AbstractUser):
    """A person using the product. Sign-offs print `get_full_name()` at the time of signing."""

    def __str__(self) -> str:
        return self.get_full_name() or self.username


class TaskCategory(models.TextChoices):
    """The ten clinical task categories of Table 4 of the review."""

    CLINICAL_KNOWLEDGE_QA = "clinical_knowledge_qa", "Clinical knowledge QA"
    CLINICAL_TEXT_CLASSIFICATION = "clinical_text_classification", "Clinical text classification"
    DIAGNOSTIC_SUPPORT = "diagnostic_support", "Diagnostic support"
    SYMPTOM_ANALYSIS_NER = "symptom_analysis_ner", "Symptom analysis / NER"
    TREATMENT_PLANNING = "treatment_planning", "Treatment planning"
    EVIDENCE_SYNTHESIS = "evidence_synthesis", "Evidence synthesis"
    CLINICAL_DOCUMENTATION = "clinical_documentation", "Clinical documentation"
    MEDICAL_CODING = "medical_coding", "Medical coding"
    PATIENT_INTERACTION = "patient_interaction", "Patient interaction"
    HEALTH_EDUCATION = "health_education", "Health education"


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


slug_validator = RegexValidator(
    r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
    "Use lower-case letters, digits and single hyphens (for example ed-triage-assistant).",
)


class Project(models.Model):
    """One LLM project under governance, from idea to monitoring.

    `current_phase` is the earliest phase whose gate is not approved; the gate services keep it
    in step in the same transaction as the gate change, so lists can filter on it cheaply.
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True, validators=[slug_validator])
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects"
    )
    clinical_setting = models.CharField(
        max_length=200, help_text="Where it is used, e.g. emergency department, primary care."
    )
    intended_use = models.TextField(help_text="What the model does and for which decisions.")
    intended_users = models.CharField(
        max_length=300, help_text="Who uses its output, e.g. triage nurses, coders, patients."
    )
    task_category = models.CharField(max_length=40, choices=TaskCategory.choices)
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices)
    current_phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.PLANNING)
    checklist_template = models.ForeignKey(
        "lifecycle.ChecklistTemplate", on_delete=models.PROTECT, related_name="projects"
    )
    signoff_policy = models.ForeignKey(
        "governance.SignOffPolicy", on_delete=models.PROTECT, related_name="projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = PROJECT_PERMISSIONS
        constraints = [
            models.CheckConstraint(
                condition=models.Q(task_category__in=TaskCategory.values),
                name="project_task_category_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(risk_tier__in=RiskTier.values), name="project_risk_tier_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("project-detail", args=[self.slug])


class Membership(models.Model):
    """One role a user holds on one project. A user may hold several roles on a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships"
    )
    role = models.CharField(max_length=40, choices=Role.choices)
    added_at = models.DateTimeField(auto_now_add=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )

    class Meta:
        ordering = ["project", "user__last_name", "user__username", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user", "role"], name="membership_unique_role"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} on {self.project}"


class ProjectUserObjectPermission(UserObjectPermissionBase):
    """Guardian's direct foreign key table: permission checks join on an indexed integer."""

    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)


class ProjectGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)


class SignOffPolicy(models.Model):
    """A versioned table of which roles must approve each phase gate, per risk tier.

    Projects keep the policy version that was active when they were registered. A policy in use
    is never edited: a change is a new version, activated for new projects.
    """

    version = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "sign-off policy"
        verbose_name_plural = "sign-off policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="signoff_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"


class SignOffRequirement(models.Model):
    """One role whose approval a gate of `phase` needs on a project of `risk_tier`."""

    policy = models.ForeignKey(SignOffPolicy, on_delete=models.CASCADE, related_name="requirements")
    phase = models.CharField(max_length=20, choices=Phase.choices)
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices)
    role = models.CharField(max_length=40, choices=Role.choices)

    class Meta:
        ordering = ["policy", "phase", "risk_tier", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "phase", "risk_tier", "role"], name="signoff_requirement_unique"
            ),
            models.CheckConstraint(
                condition=~models.Q(role__in=["auditor", "committee_member", "project_lead"]),
                name="signoff_requirement_signing_role",
            ),
        ]

    def __str__(self) -> str:
        phase, tier = self.get_phase_display(), self.get_risk_tier_display()
        return f"{phase} / {tier}: {self.get_role_display()}"


class SignatureMeaning(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"
    REVIEW = "review", "Reviewed"


class Signature(models.Model):
    """An electronic signature on a gate (21 CFR Part 11): who, in which role, meaning what,
    when, over exactly which content.

    `manifest` is the canonical JSON of what was signed and `manifest_sha256` its hash;
    `record_sha256` seals the row itself (gate, round, signer, name, role, meaning, reason,
    time, manifest hash), so a row edited or moved with SQL no longer verifies. Rows are never
    updated or deleted (database triggers); invalidation and supersession are new rows.
    """

    Meaning = SignatureMeaning

    gate = models.ForeignKey("lifecycle.Gate", on_delete=models.PROTECT, related_name="signatures")
    review_round = models.PositiveIntegerField()
    signer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signatures"
    )
    signer_name = models.CharField("printed name", max_length=300)
    role = models.CharField(max_length=40, choices=Role.choices)
    meaning = models.CharField(max_length=10, choices=SignatureMeaning.choices)
    reason = models.TextField(blank=True)
    signed_at = models.DateTimeField()
    manifest = models.TextField()
    manifest_sha256 = models.CharField(max_length=64)
    record_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["gate", "review_round", "signed_at", "id"]
        constraints = [
            # One signature per person per gate per review round.
            models.UniqueConstraint(
                fields=["gate", "review_round", "signer"], name="signature_one_per_round"
            ),
            models.CheckConstraint(
                condition=models.Q(meaning__in=SignatureMeaning.values), name="signature_meaning"
            ),
            models.CheckConstraint(
                condition=~models.Q(meaning="reject") | ~models.Q(reason=""),
                name="signature_reject_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.manifestation

    @property
    def manifestation(self) -> str:
        """§11.50: printed name, role, meaning, date and time with zone, manifest hash prefix."""
        when = self.signed_at.strftime("%Y-%m-%d %H:%M:%S %Z")
        return (
            f"{self.signer_name} ({self.get_role_display()}) — {self.get_meaning_display()} — "
            f"{when} — manifest {self.manifest_sha256[:12]}"
        )


class SignatureInvalidation(models.Model):
    """Why a signature stopped counting: the signed content changed, or a new review round
    superseded it. Append-only, like the signatures themselves."""

    class Kind(models.TextChoices):
        INVALIDATED = "invalidated", "Invalidated (signed content changed)"
        SUPERSEDED = "superseded", "Superseded (new review round or periodic review)"

    signature = models.OneToOneField(
        Signature, on_delete=models.PROTECT, related_name="invalidation"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    cause = models.TextField(help_text="The change that caused it, in words.")
    cause_event = models.ForeignKey(
        "audits.AuditEvent",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.cause}"


class ReauthFailure(models.Model):
    """A failed re-authentication at signing time; enough of them lock the account out of
    signing for a cool-off period. Written in its own committed transaction."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reauth_failures"
    )
    gate = models.ForeignKey("lifecycle.Gate", on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=200)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.user} at {self.at:%Y-%m-%d %H:%M}: {self.reason}"


class ApiToken(models.Model):
    """A personal API token for a dev team's pipeline.

    The secret is shown once, at creation; only its SHA-256 is stored. A token can expire, be
    limited to listed projects (otherwise it reaches every project its user may see), and be
    read-only. Requests made with it are attributed to the user and the token in the audit trail.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What it is for, e.g. “CI pipeline”.")
    prefix = models.CharField(max_length=12, unique=True, help_text="Identifies the token.")
    key_sha256 = models.CharField(max_length=64, unique=True)
    read_only = models.BooleanField(default=False)
    projects = models.ManyToManyField(
        Project, blank=True, related_name="+", help_text="Empty: every project of the user."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class IdempotentRequest(models.Model):
    """The first response to a request sent with an `Idempotency-Key`, replayed on retries."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method and path.")
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.key}"
