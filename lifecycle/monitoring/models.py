"""Monitoring, the recurring fifth phase: the plan of what is watched after go-live, the
batches of monitoring records (each evaluated as a run on the monitoring gate), the signals the
alert rules raise on them, incidents with their timeline, feedback from clinicians and
patients, and the rows that keep the scheduled jobs to one run per schedule."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from governance.querysets import RestrictedQuerySet


class MonitoringPlan(models.Model):
    """What the committee watches on a deployed project, against which baseline, how often,
    and when the periodic review of the monitoring gate is due (docs/monitoring.md)."""

    project = models.OneToOneField(
        "governance.Project", on_delete=models.CASCADE, related_name="monitoring_plan"
    )
    baseline_run = models.ForeignKey(
        "lifecycle.EvaluationRun",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The approved evidence run of the development or deployment gate that every "
        "batch is compared with.",
    )
    metrics = models.JSONField(
        default=list, help_text="The metrics computed on every batch and watched for trends."
    )
    cohorts = models.JSONField(
        default=list,
        blank=True,
        help_text="The group attributes whose subgroups are watched; empty: every attribute "
        "the batches carry.",
    )
    starts_on = models.DateField(help_text="The first day of the first monitoring period.")
    period_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(366)],
        help_text="Days per monitoring period; one batch per period.",
    )
    review_interval_days = models.PositiveSmallIntegerField(
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(1096)],
        help_text="Days between periodic reviews of the monitoring gate.",
    )
    resamples = models.PositiveIntegerField(
        default=500,
        validators=[MinValueValidator(100), MaxValueValidator(10_000)],
        help_text="Bootstrap resamples for each batch's confidence intervals.",
    )
    cusum_k = models.FloatField(
        "CUSUM allowance k",
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(5.0)],
        help_text="In standard errors: the shift the CUSUM ignores (half the shift to catch).",
    )
    cusum_h = models.FloatField(
        "CUSUM decision interval h",
        default=5.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(50.0)],
        help_text="In standard errors: the cumulative sum that signals a drift.",
    )
    psi_alert = models.FloatField(
        "PSI alert level",
        default=0.25,
        validators=[MinValueValidator(0.01), MaxValueValidator(10.0)],
        help_text="A field or group attribute whose PSI against the baseline reaches this "
        "raises a drift signal (0.25 is the usual 'major shift').",
    )
    review_due_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next periodic review is due."
    )
    review_overdue_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set by the scheduled check when the periodic review became overdue; cleared "
        "when the monitoring gate is approved again.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(period_days__gte=1), name="monitoring_plan_period"
            ),
            models.CheckConstraint(
                condition=models.Q(review_interval_days__gte=1),
                name="monitoring_plan_review_interval",
            ),
        ]

    def __str__(self) -> str:
        return f"Monitoring plan of {self.project}"


class BatchStatus(models.TextChoices):
    EVALUATING = "evaluating", "Evaluating"
    ANALYSING = "analysing", "Checking drift and alert rules"
    ANALYSED = "analysed", "Analysed"
    FAILED = "failed", "Failed"


class MonitoringBatch(models.Model):
    """One period's monitoring records: evaluated as a run on the monitoring gate, then
    compared with the baseline (drift, trends, alert rules) by the analysis job, which claims
    the batch with a conditional update like the evaluation job claims its run."""

    Status = BatchStatus

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="monitoring_batches"
    )
    number = models.PositiveIntegerField(help_text="Batch 1, 2, … in upload order.")
    period_start = models.DateField()
    period_end = models.DateField()
    run = models.OneToOneField(
        "lifecycle.EvaluationRun", on_delete=models.PROTECT, related_name="monitoring_batch"
    )
    status = models.CharField(
        max_length=12, choices=BatchStatus.choices, default=BatchStatus.EVALUATING
    )
    drift = models.JSONField(
        default=dict, blank=True, help_text="Drift against the baseline (PRODUCT.md's shape)."
    )
    error_message = models.TextField(blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    analysed_at = models.DateTimeField(null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["project", "period_start"]
        verbose_name_plural = "monitoring batches"
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="monitoring_batch_number"),
            models.UniqueConstraint(
                fields=["project", "period_start"], name="monitoring_batch_one_per_period"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=BatchStatus.values), name="monitoring_batch_status"
            ),
            models.CheckConstraint(
                condition=models.Q(period_end__gte=models.F("period_start")),
                name="monitoring_batch_period",
            ),
        ]

    def __str__(self) -> str:
        return f"Batch {self.number} ({self.period_start:%Y-%m-%d} to {self.period_end:%Y-%m-%d})"


class SignalRule(models.TextChoices):
    THRESHOLD = "threshold", "Interval beyond a criterion threshold"
    CUSUM = "cusum", "CUSUM drift from the baseline"
    DRIFT = "drift", "Population shift (PSI)"


class MonitoringSignal(models.Model):
    """What an alert rule found on one batch: a metric of a cohort beyond a criterion's
    threshold, a CUSUM past its decision interval, or a field whose PSI reached the plan's
    level. Each signal belongs to the incident it raised or joined."""

    Rule = SignalRule

    batch = models.ForeignKey(MonitoringBatch, on_delete=models.CASCADE, related_name="signals")
    rule = models.CharField(max_length=12, choices=SignalRule.choices)
    metric = models.CharField(
        max_length=60, help_text="The metric, or for drift the field or group attribute."
    )
    scope = models.CharField(max_length=10, help_text="overall, group, fairness, field or group.")
    group_attribute = models.CharField(max_length=60, blank=True)
    group_value = models.CharField(max_length=120, blank=True)
    value = models.FloatField(null=True, blank=True)
    limit = models.FloatField(null=True, blank=True)
    required = models.BooleanField(
        default=False, help_text="A required criterion of the monitoring gate fails."
    )
    message = models.TextField()
    incident = models.ForeignKey(
        "Incident", on_delete=models.SET_NULL, null=True, blank=True, related_name="signals"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    restrict_path = "batch__project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["batch", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "rule", "metric", "scope", "group_attribute", "group_value"],
                name="monitoring_signal_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(rule__in=SignalRule.values), name="monitoring_signal_rule"
            ),
        ]

    def __str__(self) -> str:
        return self.message


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MODERATE = "moderate", "Moderate"
    SERIOUS = "serious", "Serious"
    CRITICAL = "critical", "Critical"


# A serious or critical incident reopens the monitoring gate.
SERIOUS_SEVERITIES = (Severity.SERIOUS, Severity.CRITICAL)


class IncidentSource(models.TextChoices):
    ALERT = "alert", "Alert rule"
    FEEDBACK = "feedback", "Feedback"
    MANUAL = "manual", "Safety report"


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    INVESTIGATING = "investigating", "Investigating"
    MITIGATED = "mitigated", "Mitigated"
    RESOLVED = "resolved", "Resolved"


OPEN_INCIDENT_STATUSES = (
    IncidentStatus.OPEN,
    IncidentStatus.INVESTIGATING,
    IncidentStatus.MITIGATED,
)


class Incident(models.Model):
    """Something that may harm patients or the model's fitness: raised by an alert rule, by
    feedback, or by hand as a clinical safety report. Every change is audited and kept on its
    timeline (`IncidentEvent`)."""

    Severity = Severity
    Source = IncidentSource
    Status = IncidentStatus

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="incidents"
    )
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=IncidentSource.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(
        max_length=14, choices=IncidentStatus.choices, default=IncidentStatus.OPEN
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who sees it through to resolution.",
    )
    batch = models.ForeignKey(
        MonitoringBatch,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="incidents",
        help_text="The batch whose alert raised it.",
    )
    resolution = models.TextField(blank=True)
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when an alert rule raised it.",
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["project", "-opened_at", "-id"]
        indexes = [models.Index(fields=["project", "status"], name="incident_project_status")]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="incident_number"),
            models.CheckConstraint(
                condition=models.Q(severity__in=Severity.values), name="incident_severity"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=IncidentStatus.values), name="incident_status"
            ),
            models.CheckConstraint(
                condition=models.Q(source__in=IncidentSource.values), name="incident_source"
            ),
        ]

    def __str__(self) -> str:
        return f"Incident {self.number}: {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_INCIDENT_STATUSES

    @property
    def is_serious(self) -> bool:
        return self.severity in SERIOUS_SEVERITIES


class IncidentEventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    NOTE = "note", "Note"
    CHANGED = "changed", "Changed"
    SIGNAL = "signal", "Alert joined"
    FEEDBACK = "feedback", "Feedback joined"
    GATE_REOPENED = "gate_reopened", "Monitoring gate reopened"


class IncidentEvent(models.Model):
    """One entry of an incident's timeline: opened, a note, a change (with before and after),
    an alert or feedback joining it, the monitoring gate reopened because of it."""

    Kind = IncidentEventKind

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=IncidentEventKind.choices)
    text = models.TextField(blank=True)
    changes = models.JSONField(
        default=dict, blank=True, help_text="Field: [before, after] for a change."
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for the system (an alert rule, a scheduled job).",
    )
    at = models.DateTimeField(auto_now_add=True)

    restrict_path = "incident__project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["incident", "at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M}"


class FeedbackSource(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    PATIENT = "patient", "Patient"


class FeedbackCategory(models.TextChoices):
    ACCURACY = "accuracy", "Accuracy"
    SAFETY = "safety", "Patient safety"
    BIAS = "bias", "Bias or fairness"
    USABILITY = "usability", "Usability"
    WORKFLOW = "workflow", "Workflow"
    OTHER = "other", "Other"


class Feedback(models.Model):
    """A rating and comment on the deployed model from a clinician or a patient, with the
    record it is about. Safety feedback and the lowest rating raise an incident."""

    Source = FeedbackSource
    Category = FeedbackCategory

    project = models.ForeignKey(
        "governance.Project", on_delete=models.CASCADE, related_name="feedback"
    )
    source = models.CharField(max_length=10, choices=FeedbackSource.choices)
    rating = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="1 (harmful or useless) to 5 (excellent).",
    )
    category = models.CharField(max_length=10, choices=FeedbackCategory.choices)
    text = models.TextField(blank=True)
    record_reference = models.CharField(
        max_length=200, blank=True, help_text="The record, encounter or message it is about."
    )
    incident = models.ForeignKey(
        Incident, on_delete=models.SET_NULL, null=True, blank=True, related_name="feedback"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["project", "-created_at", "-id"]
        verbose_name_plural = "feedback"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(source__in=FeedbackSource.values), name="feedback_source"
            ),
            models.CheckConstraint(
                condition=models.Q(category__in=FeedbackCategory.values),
                name="feedback_category",
            ),
            models.CheckConstraint(
                condition=models.Q(rating__isnull=True)
                | (models.Q(rating__gte=1) & models.Q(rating__lte=5)),
                name="feedback_rating",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} feedback ({self.get_category_display()})"


class ScheduledJob(models.Model):
    """When a scheduled job last ran and is next due. Beat may deliver a schedule late, twice
    or in a burst after an outage; the job claims its row with a conditional update on
    `next_due_at`, so each due schedule runs once, and a missed one catches up once."""

    name = models.CharField(max_length=100, unique=True)
    next_due_at = models.DateTimeField()
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name
