"""Writes about checklists: a project's items, their evidence and discussion, and the
versioned checklist templates.

Every function takes the acting user, checks permission, validates, and changes the data in one
transaction. A wrong actor gets PermissionDenied, an illegal change or bad input a
ValidationError that says what is wrong; neither changes anything.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from audits.models import Action
from audits.trail import changed, record, snapshot
from governance.models import Project, User
from governance.permissions import has_project_perm, require_global_perm, require_project_perm
from lifecycle import notifications, versioning
from lifecycle.checklists.models import (
    ChecklistItem,
    ChecklistTemplate,
    Comment,
    Evidence,
    TemplateItem,
)
from lifecycle.checklists.permissions import can_edit_item
from lifecycle.gates import signoffs
from lifecycle.gates.models import Gate
from lifecycle.phases import Phase
from lifecycle.uploads import hash_upload

Status = ChecklistItem.Status


# --- Checklist ---------------------------------------------------------------------------


def checklist_instantiate(*, project: Project) -> None:
    """Create the project's five gates (Planning open, the rest locked) and its checklist
    items copied from the project's template. Runs inside `project_create`'s transaction."""
    now = timezone.now()
    gates = Gate.objects.bulk_create(
        Gate(
            project=project,
            phase=phase,
            position=phase.number,
            state=Gate.State.OPEN if phase == Phase.PLANNING else Gate.State.LOCKED,
            opened_at=now if phase == Phase.PLANNING else None,
        )
        for phase in Phase
    )
    gate_by_phase = {gate.phase: gate for gate in gates}
    template_items = TemplateItem.objects.filter(template=project.checklist_template).order_by(
        "position", "id"
    )
    ChecklistItem.objects.bulk_create(
        ChecklistItem(
            project=project,
            gate=gate_by_phase[t.phase],
            template_item=t,
            phase=t.phase,
            key=t.key,
            title=t.title,
            guidance=t.guidance,
            owner_role=t.owner_role,
            required=t.required,
            evidence_required=t.evidence_required,
            position=index,
        )
        for index, t in enumerate(template_items, start=1)
    )


def _lock_item(item: ChecklistItem) -> ChecklistItem:
    return (
        ChecklistItem.objects.select_for_update().select_related("project", "gate").get(pk=item.pk)
    )


def _require_item_editable(actor: User, item: ChecklistItem) -> None:
    if not can_edit_item(actor, item):
        raise PermissionDenied(
            f"You cannot edit “{item.title}”: it is owned by the "
            f"{item.get_owner_role_display()} and not assigned to you."
        )
    _require_phase_open(item)


def _require_phase_open(item: ChecklistItem) -> None:
    if item.gate.state == Gate.State.LOCKED:
        previous = Phase(item.phase).number - 1
        raise ValidationError(
            f"The {Phase(item.phase).label} phase is locked until the gate of phase "
            f"{previous} is approved."
        )


def _active_evidence_count(item: ChecklistItem) -> int:
    return item.evidence.filter(withdrawn_at__isnull=True).count()


@transaction.atomic
def checklist_item_update(
    *,
    actor: User,
    item: ChecklistItem,
    status: str | None = None,
    justification: str | None = None,
) -> ChecklistItem:
    """Change an item's status and/or its not-applicable justification.

    Not applicable needs a written justification; Done needs evidence when the item requires
    evidence.
    """
    item = _lock_item(item)
    _require_item_editable(actor, item)
    new_status = item.status if status is None else status
    new_justification = item.justification if justification is None else justification.strip()
    if new_status not in Status.values:
        raise ValidationError(
            {"status": f"“{new_status}” is not a status; use one of {', '.join(Status.values)}."}
        )
    if new_status == Status.NOT_APPLICABLE and not new_justification:
        raise ValidationError(
            {"justification": "Say why the item does not apply: a justification is required."}
        )
    if new_status == Status.DONE and item.evidence_required and not _active_evidence_count(item):
        raise ValidationError(
            {"status": f"“{item.title}” needs evidence before it can be marked done."}
        )
    before = snapshot(item, ("status", "justification"))
    item.status = new_status
    item.justification = new_justification
    item.updated_by = actor
    item.save(update_fields=["status", "justification", "updated_by", "updated_at"])
    before, after = changed(before, snapshot(item, ("status", "justification")))
    signoffs.record_signed_content_change(
        actor,
        item.gate,
        action=Action.ITEM_UPDATE,
        target=item,
        target_text=item.title,
        before=before,
        after=after,
        cause=f"“{item.title}” changed to {item.get_status_display().lower()}",
    )
    return item


@transaction.atomic
def checklist_item_assign(
    *, actor: User, item: ChecklistItem, assignee: User | None
) -> ChecklistItem:
    """Assign an item to a project member who can work on checklists, or clear it."""
    item = _lock_item(item)
    _require_item_editable(actor, item)
    if assignee is not None and not has_project_perm(assignee, "edit_checklist", item.project):
        raise ValidationError(
            {"assignee": f"{assignee} holds no role on this project that edits checklist items."}
        )
    before = _assignee_values(item.assignee)
    item.assignee = assignee
    item.updated_by = actor
    item.save(update_fields=["assignee", "updated_by", "updated_at"])
    record(
        actor=actor,
        action=Action.ITEM_ASSIGN,
        project=item.project,
        target=item,
        target_text=item.title,
        before=before,
        after=_assignee_values(assignee),
    )
    if before["assignee"] != item.assignee_id:  # the same assignee again: nothing new to say
        notifications.item_assigned(item, by=actor)
    return item


def _assignee_values(user: User | None) -> dict[str, Any]:
    if user is None:
        return {"assignee": None}
    return {"assignee": user.pk, "assignee_name": user.get_full_name() or user.get_username()}


# --- Evidence and comments ------------------------------------------------------------------


def _require_can_add_evidence(actor: User, item: ChecklistItem) -> ChecklistItem:
    item = _lock_item(item)
    require_project_perm(actor, "add_evidence", item.project)
    _require_phase_open(item)
    return item


@transaction.atomic
def evidence_add_file(
    *, actor: User, item: ChecklistItem, upload: UploadedFile, title: str = ""
) -> Evidence:
    """Attach an uploaded file, stored with its SHA-256 and size."""
    item = _require_can_add_evidence(actor, item)
    name, size, digest = hash_upload(
        upload, "file", settings.EVIDENCE_MAX_BYTES, "EVIDENCE_MAX_BYTES"
    )
    evidence = Evidence(
        item=item,
        kind=Evidence.Kind.FILE,
        title=title.strip()[:200],
        original_name=name[:255],
        content_type=(getattr(upload, "content_type", "") or "")[:120],
        size=size,
        sha256=digest,
        added_by=actor,
    )
    evidence.file.save(name, upload, save=False)
    try:
        evidence.save()
        _record_evidence_added(actor, item, evidence)
    except Exception:
        # The row was refused: do not leave the stored file behind.
        evidence.file.delete(save=False)
        raise
    return evidence


def _record_evidence_added(actor: User, item: ChecklistItem, evidence: Evidence) -> None:
    fields = {
        Evidence.Kind.FILE: ("kind", "title", "original_name", "content_type", "size", "sha256"),
        Evidence.Kind.LINK: ("kind", "title", "url"),
        Evidence.Kind.NOTE: ("kind", "title", "note"),
    }[Evidence.Kind(evidence.kind)]
    signoffs.record_signed_content_change(
        actor,
        item.gate,
        action=Action.EVIDENCE_ADD,
        target=evidence,
        after={"item": item.key, **snapshot(evidence, fields)},
        cause=f"evidence “{evidence}” was attached to “{item.title}”",
    )


@transaction.atomic
def evidence_add_link(*, actor: User, item: ChecklistItem, url: str, title: str = "") -> Evidence:
    """Attach a link (http or https) to a document kept elsewhere."""
    item = _require_can_add_evidence(actor, item)
    url = url.strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValidationError({"url": f"“{url}” is not an http(s) address."}) from None
    evidence = Evidence.objects.create(
        item=item, kind=Evidence.Kind.LINK, url=url, title=title.strip()[:200], added_by=actor
    )
    _record_evidence_added(actor, item, evidence)
    return evidence


@transaction.atomic
def evidence_add_note(*, actor: User, item: ChecklistItem, note: str, title: str = "") -> Evidence:
    """Attach a written note as evidence."""
    item = _require_can_add_evidence(actor, item)
    note = note.strip()
    if not note:
        raise ValidationError({"note": "The note is empty."})
    evidence = Evidence.objects.create(
        item=item, kind=Evidence.Kind.NOTE, note=note, title=title.strip()[:200], added_by=actor
    )
    _record_evidence_added(actor, item, evidence)
    return evidence


@transaction.atomic
def evidence_withdraw(*, actor: User, evidence: Evidence, reason: str) -> Evidence:
    """Withdraw evidence attached by mistake; it stays in the history with the reason."""
    evidence = Evidence.objects.select_for_update().select_related("item").get(pk=evidence.pk)
    item = _lock_item(evidence.item)
    if evidence.added_by_id != actor.pk and not can_edit_item(actor, item):
        raise PermissionDenied(
            "Only whoever attached evidence, or an item editor, can withdraw it."
        )
    require_project_perm(actor, "add_evidence", item.project)
    if evidence.withdrawn_at is not None:
        raise ValidationError("This evidence was already withdrawn.")
    if not reason.strip():
        raise ValidationError({"reason": "Say why the evidence is withdrawn."})
    if item.status == Status.DONE and item.evidence_required and _active_evidence_count(item) == 1:
        raise ValidationError(
            f"“{item.title}” is done and this is its only evidence: "
            "attach the replacement or mark the item in progress first."
        )
    evidence.withdrawn_at = timezone.now()
    evidence.withdrawn_by = actor
    evidence.withdrawal_reason = reason.strip()
    evidence.save(update_fields=["withdrawn_at", "withdrawn_by", "withdrawal_reason"])
    signoffs.record_signed_content_change(
        actor,
        item.gate,
        action=Action.EVIDENCE_WITHDRAW,
        target=evidence,
        before={"withdrawn": False},
        after={"withdrawn": True, "item": item.key},
        reason=evidence.withdrawal_reason,
        cause=f"evidence “{evidence}” was withdrawn from “{item.title}”",
    )
    return evidence


@transaction.atomic
def evidence_record_download(*, actor: User, evidence: Evidence) -> None:
    """Record that `actor` downloaded an evidence file (a read that matters)."""
    require_project_perm(actor, "view_project", evidence.item.project)
    record(
        actor=actor,
        action=Action.EVIDENCE_DOWNLOAD,
        project=evidence.item.project,
        target=evidence,
        after={"sha256": evidence.sha256, "item": evidence.item.key},
    )


@transaction.atomic
def comment_add(*, actor: User, item: ChecklistItem, body: str) -> Comment:
    """Post a message in the item's discussion thread."""
    require_project_perm(actor, "comment", item.project)
    body = body.strip()
    if not body:
        raise ValidationError({"body": "The comment is empty."})
    comment = Comment.objects.create(item=item, author=actor, body=body)
    record(
        actor=actor,
        action=Action.COMMENT_ADD,
        project=item.project,
        target=comment,
        target_text=f"Comment on {item.title}",
        after={"item": item.key, "body": body},
    )
    return comment


# --- Gates -----------------------------------------------------------------------------------


# --- Model and dataset versions -----------------------------------------------------------


# --- Checklist templates ------------------------------------------------------------------


@transaction.atomic
def checklist_template_create_version(
    *, actor: User, source: ChecklistTemplate, version: str, name: str = ""
) -> ChecklistTemplate:
    """Start a new template version as a copy of `source`; it is inactive until activated."""
    require_global_perm(actor, "lifecycle.add_checklisttemplate", "create checklist templates")
    template: ChecklistTemplate = versioning.copy_version(
        source,
        actor=actor,
        version=version,
        name=name,
        rows="items",
        action=Action.TEMPLATE_CREATE_VERSION,
        copied=("description",),
        recorded=("version", "name"),
    )
    return template


@transaction.atomic
def template_item_save(*, actor: User, item: TemplateItem) -> TemplateItem:
    """Add or change an item of a draft template (never one in use: make a new version)."""
    require_global_perm(actor, "lifecycle.change_checklisttemplate", "edit checklist templates")
    template = versioning.lock_draft(ChecklistTemplate, item.template_id, "Template")
    before = snapshot(TemplateItem.objects.get(pk=item.pk), TEMPLATE_ITEM_FIELDS) if item.pk else {}
    item.full_clean()
    item.save()
    before, after = changed(before, snapshot(item, TEMPLATE_ITEM_FIELDS))
    record(
        actor=actor,
        action=Action.TEMPLATE_ITEM_SAVE,
        project=None,
        target=item,
        before=before or None,
        after={"template": template.version, **after},
    )
    return item


TEMPLATE_ITEM_FIELDS = (
    "phase",
    "key",
    "title",
    "guidance",
    "owner_role",
    "required",
    "evidence_required",
    "position",
)


@transaction.atomic
def checklist_template_activate(*, actor: User, template: ChecklistTemplate) -> ChecklistTemplate:
    """Make `template` the one new projects start from."""
    require_global_perm(actor, "lifecycle.change_checklisttemplate", "activate checklist templates")
    template = ChecklistTemplate.objects.select_for_update().get(pk=template.pk)
    phases_present = set(template.items.values_list("phase", flat=True))
    missing = [phase.label for phase in Phase if phase not in phases_present]
    if missing:
        raise ValidationError(
            f"Template v{template.version} has no items for: {', '.join(missing)}."
        )
    versioning.make_sole_active(template, actor=actor, action=Action.TEMPLATE_ACTIVATE)
    return template


@transaction.atomic
def template_item_delete(*, actor: User, item: TemplateItem) -> None:
    """Remove an item from a draft template (never from one in use)."""
    require_global_perm(actor, "lifecycle.change_checklisttemplate", "edit checklist templates")
    template = versioning.lock_draft(ChecklistTemplate, item.template_id, "Template")
    values = snapshot(item, TEMPLATE_ITEM_FIELDS)
    target_id, target_text = item.pk, str(item)
    item.delete()
    record(
        actor=actor,
        action=Action.TEMPLATE_ITEM_DELETE,
        project=None,
        target_type="lifecycle.templateitem",
        target_id=target_id,
        target_text=target_text,
        before={"template": template.version, **values},
    )


# --- Evaluations ------------------------------------------------------------------------------


# --- Gate criteria ---------------------------------------------------------------------------
