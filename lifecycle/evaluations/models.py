"""Evaluations: the model and dataset versions a project measures, the uploaded runs, and
their results (one row per number)."""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.timesince import timesince

from governance.querysets import RestrictedQuerySet
from lifecycle.checklists.models import sha256_validator
from lifecycle.metrics.registry import DEFAULT_RESAMPLES


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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

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


def _duration(start: datetime, end: datetime) -> str:
    """Like "12 minutes" or "1 hour, 5 minutes": timesince, with plain spaces for the API."""
    return timesince(start, end).replace("\xa0", " ")


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
    number = models.PositiveIntegerField(
        help_text="The run's number within its project: run 1, 2, … in upload order."
    )
    gate = models.ForeignKey(
        "lifecycle.Gate", on_delete=models.PROTECT, related_name="evaluation_runs"
    )
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
    subset_reason = models.TextField(
        blank=True,
        help_text="Set when the upload deliberately covers only part of its dataset version, "
        "and why. A subset run is shown but never satisfies a required criterion.",
    )
    task = models.CharField(max_length=40, blank=True, help_text="Task category preset used.")
    metrics = models.JSONField(default=list, blank=True, help_text="Metrics asked for, if any.")
    seed = models.PositiveIntegerField(default=0)
    resamples = models.PositiveIntegerField(default=DEFAULT_RESAMPLES)
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
    requeued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a job was last queued for it again: when a worker gave it back to "
        "retry, or the sweep found it stuck. Empty: queued once, at upload.",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["gate", "status", "finished_at"], name="run_gate_status")]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="evaluation_run_number"),
            models.CheckConstraint(
                condition=models.Q(status__in=RunStatus.values), name="evaluation_run_status"
            ),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="evaluation_run_progress",
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.number} of {self.model_version} on {self.dataset_version}"

    @property
    def is_subset(self) -> bool:
        """A declared subset of its dataset version (never evidence for a required criterion)."""
        return bool(self.subset_reason)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def stall_notice(self) -> str:
        """What to tell the user when the run has waited longer than EVALUATION_STALE_AFTER
        (no worker took it up, or its worker went silent); empty otherwise. The run page and
        the API both show it."""
        now = timezone.now()
        stale_after = timedelta(seconds=settings.EVALUATION_STALE_AFTER)
        if self.status == RunStatus.QUEUED:
            # Queued since upload, or since a worker last gave it back to retry (not
            # `requeued_at`, which the sweep moves each time it queues the run again).
            since = max(self.created_at, self.heartbeat_at or self.created_at)
            if now - since >= stale_after:
                return (
                    f"No worker has picked this run up for {_duration(since, now)}. The "
                    "evaluation service may be down: tell your administrator."
                )
        beat = self.heartbeat_at
        if self.status == RunStatus.RUNNING and beat is not None and now - beat >= stale_after:
            return (
                f"The worker stopped reporting progress {_duration(beat, now)} ago; it will "
                "be retried automatically."
            )
        return ""


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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "run__project"
    objects = RestrictedQuerySet.as_manager()

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
