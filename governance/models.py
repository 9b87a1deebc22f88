"""Who may do what: users, projects, memberships and their object permissions."""

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from governance.querysets import RestrictedQuerySet
from governance.roles import PROJECT_PERMISSIONS, Role
from lifecycle.phases import Phase


class User(AbstractUser):
    """A person using the product. Sign-offs print `get_full_name()` at the time of signing."""

    email_notifications = models.BooleanField(
        "e-mail notifications",
        default=True,
        help_text="E-mail me when a gate needs my signature, when a gate I lead is decided or "
        "reopened, and when an item is assigned to me.",
    )

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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = ""
    objects = RestrictedQuerySet.as_manager()

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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

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
