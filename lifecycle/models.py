"""The lifecycle domain: checklist templates, per-project checklist items, evidence, comments,
phase gates, and the model and dataset versions a project evaluates."""

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from governance.roles import Role
from lifecycle.phases import Phase

sha256_validator = RegexValidator(
    r"^[0-9a-f]{64}$", "A SHA-256 is 64 lower-case hexadecimal characters."
)


class ChecklistTemplate(models.Model):
    """A versioned set of checklist considerations for the five phases.

    New projects copy the active template's items; a project keeps the version it started with.
    A template used by any project is never edited: a change is a new version.
    """

    version = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(
        default=False, help_text="New projects start from the active template."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"],
                condition=models.Q(is_active=True),
                name="checklist_template_one_active",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"


class TemplateItem(models.Model):
    """One consideration of a template: what the committee expects to see for it."""

    template = models.ForeignKey(ChecklistTemplate, on_delete=models.CASCADE, related_name="items")
    phase = models.CharField(max_length=20, choices=Phase.choices)
    key = models.CharField(
        max_length=80,
        validators=[RegexValidator(r"^[a-z]+\.[a-z0-9-]+$", "Use phase.kebab-case-name.")],
        help_text="Stable identifier, e.g. planning.defining-scope.",
    )
    title = models.CharField(max_length=200)
    guidance = models.TextField(help_text="What good evidence for this item looks like.")
    owner_role = models.CharField(max_length=40, choices=Role.choices)
    required = models.BooleanField(default=True)
    evidence_required = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["template", "position"]
        constraints = [
            models.UniqueConstraint(fields=["template", "key"], name="template_item_unique_key"),
        ]

    def __str__(self) -> str:
        return self.title


class GateState(models.TextChoices):
    LOCKED = "locked", "Locked"
    OPEN = "open", "Open"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


class Gate(models.Model):
    """The gate that ends a phase of one project.

    `review_round` counts submissions (a resubmission after changes requested starts a new
    round); `cycle` counts the periodic reviews of the recurring monitoring gate.
    """

    State = GateState

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="gates"
    )
    phase = models.CharField(max_length=20, choices=Phase.choices)
    position = models.PositiveSmallIntegerField()
    state = models.CharField(max_length=20, choices=State.choices, default=State.LOCKED)
    review_round = models.PositiveIntegerField(default=0)
    cycle = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decision_note = models.TextField(blank=True)
    reopened_at = models.DateTimeField(null=True, blank=True)
    reopened_reason = models.TextField(
        blank=True, help_text="Set when signed content changed and the gate went back to review."
    )

    class Meta:
        ordering = ["project", "position"]
        constraints = [
            models.UniqueConstraint(fields=["project", "phase"], name="gate_unique_phase"),
            models.CheckConstraint(
                condition=models.Q(state__in=GateState.values), name="gate_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} — {self.get_phase_display()} gate"

    @property
    def phase_enum(self) -> Phase:
        return Phase(self.phase)


class ItemStatus(models.TextChoices):
    NOT_STARTED = "not_started", "Not started"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    NOT_APPLICABLE = "not_applicable", "Not applicable"


# An item is settled when it is done or justified as not applicable; a required item that is
# not settled blocks its gate.
SETTLED_STATUSES = (ItemStatus.DONE, ItemStatus.NOT_APPLICABLE)


class ChecklistItem(models.Model):
    """A project's copy of a template consideration, with its status and evidence.

    Key, title, guidance, owner role and flags are copied from the template item when the
    project is created, so later template versions never change what a project was reviewed on.
    """

    Status = ItemStatus

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="checklist_items"
    )
    gate = models.ForeignKey(Gate, on_delete=models.CASCADE, related_name="items")
    template_item = models.ForeignKey(TemplateItem, on_delete=models.PROTECT, related_name="+")
    phase = models.CharField(max_length=20, choices=Phase.choices)
    key = models.CharField(max_length=80)
    title = models.CharField(max_length=200)
    guidance = models.TextField()
    owner_role = models.CharField(max_length=40, choices=Role.choices)
    required = models.BooleanField()
    evidence_required = models.BooleanField()
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NOT_STARTED)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="assigned_items",
    )
    justification = models.TextField(
        blank=True, help_text="Why the item does not apply; required for Not applicable."
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["project", "position"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="checklist_item_unique_key"),
            models.CheckConstraint(
                condition=models.Q(status__in=ItemStatus.values),
                name="checklist_item_status_valid",
            ),
            # Not applicable is only ever stored with its written justification.
            models.CheckConstraint(
                condition=~models.Q(status="not_applicable") | ~models.Q(justification=""),
                name="checklist_item_na_justified",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.get_status_display()})"

    @property
    def is_settled(self) -> bool:
        """Done, or justified as not applicable: what gate submission requires."""
        return self.status in SETTLED_STATUSES


def evidence_upload_to(evidence: "Evidence", filename: str) -> str:
    # A random directory per upload: names never collide and are not guessable.
    return f"evidence/{evidence.item.project_id}/{uuid.uuid4().hex}/{filename}"


class EvidenceKind(models.TextChoices):
    FILE = "file", "File"
    LINK = "link", "Link"
    NOTE = "note", "Note"


class Evidence(models.Model):
    """An uploaded file (stored with its SHA-256 and size), a link, or a note on an item.

    Evidence is never edited; wrongly attached evidence is withdrawn with a reason and stays
    visible in the history.
    """

    Kind = EvidenceKind

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="evidence")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    title = models.CharField(max_length=200, blank=True)
    file = models.FileField(upload_to=evidence_upload_to, max_length=400, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=120, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, validators=[sha256_validator])
    url = models.URLField(max_length=2000, blank=True)
    note = models.TextField(blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    withdrawal_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["item", "added_at", "id"]
        verbose_name_plural = "evidence"
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="file", size__isnull=False)
                    & ~models.Q(sha256="")
                    & ~models.Q(file="")
                )
                | models.Q(kind="link", sha256="") & ~models.Q(url="")
                | models.Q(kind="note", sha256="") & ~models.Q(note=""),
                name="evidence_kind_complete",
            ),
        ]

    def __str__(self) -> str:
        return self.title or self.original_name or self.url or self.note[:60]

    @property
    def is_active(self) -> bool:
        return self.withdrawn_at is None


class Comment(models.Model):
    """A message in a checklist item's discussion thread."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.author}: {self.body[:60]}"


class Adaptation(models.TextChoices):
    PROMPT_ENGINEERING = "prompt_engineering", "Prompt engineering"
    IN_CONTEXT_LEARNING = "in_context_learning", "In-context learning (zero/few-shot)"
    LORA = "lora", "LoRA / QLoRA fine-tuning"
    FULL_FINE_TUNING = "full_fine_tuning", "Full fine-tuning"
    RAG = "rag", "Retrieval-augmented generation (RAG)"
    RLHF = "rlhf", "Reinforcement learning from human feedback (RLHF)"
    MULTI_AGENT = "multi_agent", "Multi-agent system"


class ModelVersion(models.Model):
    """A version of the project's model: base model plus the adaptation approach (Table 2)."""

    Adaptation = Adaptation

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="model_versions"
    )
    label = models.CharField(max_length=100, help_text="Name and version, e.g. scribe-v2.1.")
    base_model = models.CharField(max_length=200)
    adaptation = models.CharField(max_length=30, choices=Adaptation.choices)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["project", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "label"], name="model_version_unique_label"),
            models.CheckConstraint(
                condition=models.Q(adaptation__in=Adaptation.values),
                name="model_version_adaptation_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.label


class DatasetPurpose(models.TextChoices):
    TRAINING = "training", "Training"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"
    MONITORING = "monitoring", "Monitoring"


class DatasetVersion(models.Model):
    """A version of a dataset the project trains, validates, tests or monitors on."""

    Purpose = DatasetPurpose

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="dataset_versions"
    )
    label = models.CharField(max_length=100)
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    description = models.TextField(blank=True)
    row_count = models.PositiveBigIntegerField()
    sha256 = models.CharField("content SHA-256", max_length=64, validators=[sha256_validator])
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["project", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "label"], name="dataset_version_unique_label"
            ),
            models.CheckConstraint(
                condition=models.Q(purpose__in=DatasetPurpose.values),
                name="dataset_version_purpose_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_purpose_display()})"


def evaluation_upload_to(run: "EvaluationRun", filename: str) -> str:
    return f"evaluations/{run.project_id}/{uuid.uuid4().hex}/{filename}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class EvaluationRun(models.Model):
    """One upload of evaluation records for a gate, and the background job that scores it.

    The job claims the run with a conditional update that sets a fresh `claim_token`; only the
    holder of the current token may write results, so a redelivered or duplicated task never
    stores a second set.
    """

    Status = RunStatus

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="evaluation_runs"
    )
    gate = models.ForeignKey(Gate, on_delete=models.PROTECT, related_name="evaluation_runs")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="evaluation_runs"
    )
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="evaluation_runs"
    )
    file = models.FileField(upload_to=evaluation_upload_to, max_length=400)
    original_name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, validators=[sha256_validator])
    task = models.CharField(max_length=40, blank=True, help_text="Task category preset used.")
    metrics = models.JSONField(default=list, blank=True, help_text="Metrics asked for, if any.")
    seed = models.PositiveIntegerField(default=0)
    resamples = models.PositiveIntegerField(default=1000)
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    n_records = models.PositiveIntegerField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["gate", "status", "finished_at"], name="run_gate_status")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=RunStatus.values), name="evaluation_run_status"
            ),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="evaluation_run_progress",
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.model_version} on {self.dataset_version}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ResultScope(models.TextChoices):
    OVERALL = "overall", "Overall"
    GROUP = "group", "Subgroup"
    FAIRNESS = "fairness", "Fairness between groups"


class EvaluationResult(models.Model):
    """One number of a run: a metric overall, for one subgroup, or a fairness difference
    between the groups of one attribute. Stored as rows so trends across runs can be queried."""

    Scope = ResultScope

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="results")
    metric = models.CharField(max_length=60)
    scope = models.CharField(max_length=10, choices=ResultScope.choices)
    group_attribute = models.CharField(max_length=60, blank=True)
    group_value = models.CharField(max_length=120, blank=True)
    value = models.FloatField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    n = models.PositiveIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why the value could not be computed.")
    warnings = models.JSONField(default=list, blank=True)
    detail = models.JSONField(
        default=dict, blank=True, help_text="Non-scalar values, e.g. a confusion matrix."
    )

    class Meta:
        ordering = ["run", "scope", "group_attribute", "group_value", "metric"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "metric", "scope", "group_attribute", "group_value"],
                name="evaluation_result_unique",
            )
        ]
        indexes = [models.Index(fields=["metric", "scope"], name="result_metric_scope")]

    def __str__(self) -> str:
        where = f" [{self.group_attribute}={self.group_value}]" if self.group_value else ""
        return f"{self.metric}{where}: {self.value}"


class Comparator(models.TextChoices):
    GTE = ">=", "≥"
    GT = ">", ">"
    LTE = "<=", "≤"
    LT = "<", "<"


class CriterionScope(models.TextChoices):
    OVERALL = "overall", "Overall"
    EACH_GROUP = "each_group", "Every subgroup"
    WORST_GROUP = "worst_group", "Worst subgroup"


class CriterionBound(models.TextChoices):
    VALUE = "value", "Value"
    CI_LOW = "ci_low", "Lower confidence bound"
    CI_HIGH = "ci_high", "Upper confidence bound"


class GateCriterion(models.Model):
    """A pass/fail rule on the gate's latest evaluation, e.g. `ci_low(recall) >= 0.80` or
    `demographic_parity_difference(sex) <= 0.10`. Required criteria must pass for approval."""

    Scope = CriterionScope
    Bound = CriterionBound

    gate = models.ForeignKey(Gate, on_delete=models.CASCADE, related_name="criteria")
    metric = models.CharField(max_length=60)
    scope = models.CharField(
        max_length=12, choices=CriterionScope.choices, default=CriterionScope.OVERALL
    )
    group_attribute = models.CharField(
        max_length=60,
        blank=True,
        help_text="For fairness metrics and subgroup scopes; empty means every attribute.",
    )
    bound = models.CharField(
        max_length=8, choices=CriterionBound.choices, default=CriterionBound.VALUE
    )
    comparator = models.CharField(max_length=2, choices=Comparator.choices)
    threshold = models.FloatField()
    required = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["gate", "id"]
        verbose_name_plural = "gate criteria"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(comparator__in=Comparator.values), name="criterion_comparator"
            ),
            models.CheckConstraint(
                condition=models.Q(scope__in=CriterionScope.values), name="criterion_scope"
            ),
            models.CheckConstraint(
                condition=models.Q(bound__in=CriterionBound.values), name="criterion_bound"
            ),
        ]

    def __str__(self) -> str:
        return self.expression

    @property
    def expression(self) -> str:
        """The criterion as the committee writes it, e.g. `ci_low(recall) >= 0.8`."""
        target = self.metric + (f"({self.group_attribute})" if self.group_attribute else "")
        if self.bound != CriterionBound.VALUE:
            target = f"{self.bound}({target})"
        if self.scope != CriterionScope.OVERALL:
            target = f"{self.scope}:{target}"
        return f"{target} {self.comparator} {self.threshold:g}"
