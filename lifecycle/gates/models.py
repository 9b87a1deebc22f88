"""Gates: the gate that ends each phase, its criteria on evaluation results, the sign-off
policies that say who must approve it, the signatures, and their invalidations.

The sign-off models keep the `governance` app label they were created under: their tables,
content types and the `governance.signature` targets of the audit trail predate this package
and stay exactly as they are (docs/architecture.md).
"""

from django.conf import settings
from django.db import models

from governance.models import RiskTier
from governance.querysets import RestrictedQuerySet
from governance.roles import Role
from lifecycle.phases import Phase


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
    evidence_runs = models.ManyToManyField(
        "lifecycle.EvaluationRun",
        blank=True,
        related_name="evidence_for",
        help_text="The runs the gate is judged on, designated by the project lead at submission "
        "(docs/evaluations.md). Empty before submission: the gate is previewed on its latest "
        "run that covers its dataset.",
    )

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

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
    min_records = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Fewer records than this overall: insufficient evidence, never pass.",
    )
    min_group_records = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A subgroup with fewer records than this: insufficient evidence, never pass.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "gate__project"
    objects = RestrictedQuerySet.as_manager()

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
        app_label = "governance"
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
        app_label = "governance"
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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "gate__project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        app_label = "governance"
        ordering = ["gate", "review_round", "signed_at", "id"]
        constraints = [
            # One decision (approval or rejection) per person per gate per review round, and
            # separately at most one "reviewed": reviewing never uses up the decision.
            models.UniqueConstraint(
                fields=["gate", "review_round", "signer"],
                condition=models.Q(meaning__in=["approve", "reject"]),
                name="signature_one_decision_per_round",
            ),
            models.UniqueConstraint(
                fields=["gate", "review_round", "signer"],
                condition=models.Q(meaning="review"),
                name="signature_one_review_per_round",
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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "signature__gate__project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        app_label = "governance"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.cause}"


class ReauthFailure(models.Model):
    """A failed re-authentication at signing time: which gate, why, from where. The failure is
    also counted by the login lockout (`governance.lockout`), which decides when the account is
    locked. Written in its own committed transaction."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reauth_failures"
    )
    gate = models.ForeignKey("lifecycle.Gate", on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=200)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        app_label = "governance"
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.user} at {self.at:%Y-%m-%d %H:%M}: {self.reason}"
