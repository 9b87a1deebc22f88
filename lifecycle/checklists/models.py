"""Checklists: the versioned templates of Table 1's considerations, each project's copy of
them, the evidence attached to an item and its discussion."""

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from governance.querysets import RestrictedQuerySet
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
    gate = models.ForeignKey("lifecycle.Gate", on_delete=models.CASCADE, related_name="items")
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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "project"
    objects = RestrictedQuerySet.as_manager()

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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "item__project"
    objects = RestrictedQuerySet.as_manager()

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

    # The path to its project: `objects.restrict(user)` keeps what the user may see.
    restrict_path = "item__project"
    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["item", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.author}: {self.body[:60]}"
