"""Writes of the lifecycle domain: checklist items, evidence, comments, gates, versions and
checklist templates.

Every function takes the acting user, checks permission, validates, and changes the data in one
transaction. A wrong actor gets PermissionDenied, an illegal change or bad input a
ValidationError that says what is wrong; neither changes anything.
"""

import datetime
import hashlib
import os
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audits.models import Action, AuditEvent
from audits.services import changed, record, snapshot
from governance import signoffs
from governance.models import Project, User
from governance.permissions import has_project_perm, require_project_perm
from governance.versioning import make_sole_active
from lifecycle import evaluations
from lifecycle.metrics import METRICS, TASK_PRESETS, Limits, RecordError, parse_records
from lifecycle.metrics.engine import resolve_metrics
from lifecycle.models import (
    ChecklistItem,
    ChecklistTemplate,
    Comment,
    DatasetVersion,
    EvaluationResult,
    EvaluationRun,
    Evidence,
    Gate,
    GateCriterion,
    ModelVersion,
    ResultScope,
    RunStatus,
    TemplateItem,
)
from lifecycle.permissions import can_edit_item
from lifecycle.phases import Phase
from lifecycle.progress import refresh_current_phase
from lifecycle.selectors import blocking_items

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
    _record_gate_content_change(
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


def _record_gate_content_change(
    actor: User | None,
    gate: Gate,
    *,
    action: str,
    target: Any,
    cause: str,
    target_type: str = "",
    target_id: int | str = "",
    target_text: str = "",
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
) -> None:
    """Audit a change to what the gate's signatures cover, and invalidate the signatures it
    broke (reopening the gate if it was approved), all in the caller's transaction."""
    gate = Gate.objects.select_related(
        "project__checklist_template", "project__signoff_policy"
    ).get(pk=gate.pk)
    stale = signoffs.stale_signatures(gate)
    event = record(
        actor=actor,
        action=action,
        project=gate.project,
        target=target,
        target_type=target_type,
        target_id=target_id,
        target_text=target_text,
        before=before,
        after={**(after or {}), **signoffs.invalidation_summary(stale, gate)},
        reason=reason,
    )
    signoffs.invalidate(gate=gate, stale=stale, event=event, actor=actor, cause=cause)


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
    return item


def _assignee_values(user: User | None) -> dict:
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
    name, size, digest = _hash_upload(
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
    }[evidence.kind]
    _record_gate_content_change(
        actor,
        item.gate,
        action=Action.EVIDENCE_ADD,
        target=evidence,
        after={"item": item.key, **snapshot(evidence, fields)},
        cause=f"evidence “{evidence}” was attached to “{item.title}”",
    )


def _hash_upload(
    upload: UploadedFile, field: str, limit: int, setting: str
) -> tuple[str, int, str]:
    """Stream an upload once: its clean name, size and SHA-256, refusing empty files and files
    over `limit` bytes with a message that names the setting."""
    name = os.path.basename(upload.name or "").strip()
    if not name:
        raise ValidationError({field: "The uploaded file has no name."})

    def too_large(size: int) -> ValidationError:
        message = f"“{name}” is {size:,} bytes; files may be at most {limit:,} bytes ({setting})."
        return ValidationError({field: message})

    if upload.size is not None and upload.size > limit:
        raise too_large(upload.size)
    digest = hashlib.sha256()
    size = 0
    for chunk in upload.chunks():
        digest.update(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(size)
    if size == 0:
        raise ValidationError({field: f"“{name}” is empty."})
    upload.seek(0)
    return name, size, digest.hexdigest()


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
    _record_gate_content_change(
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


def _lock_gate(gate: Gate) -> Gate:
    return Gate.objects.select_for_update().select_related("project").get(pk=gate.pk)


def _require_settled(gate: Gate, verb: str) -> None:
    missing = list(blocking_items(gate).values_list("title", flat=True))
    if missing:
        listed = "; ".join(missing)
        raise ValidationError(
            f"The gate cannot be {verb}: {len(missing)} required item(s) are neither done nor "
            f"justified as not applicable: {listed}."
        )


def _require_state(gate: Gate, allowed: tuple[str, ...], verb: str) -> None:
    if gate.state not in allowed:
        raise ValidationError(
            f"The {gate.phase_enum.label} gate is {gate.get_state_display().lower()} and cannot "
            f"be {verb}."
        )


@transaction.atomic
def gate_submit(*, actor: User, gate: Gate, note: str = "") -> Gate:
    """Submit a gate for committee review; every required item must be done or justified.
    Each submission starts a new review round."""
    gate = _lock_gate(gate)
    require_project_perm(actor, "submit_gate", gate.project)
    _require_state(gate, (Gate.State.OPEN, Gate.State.CHANGES_REQUESTED), "submitted")
    _require_settled(gate, "submitted")
    before = snapshot(gate, GATE_FIELDS)
    gate.state = Gate.State.IN_REVIEW
    gate.review_round += 1
    gate.submitted_at = timezone.now()
    gate.decision_note = note.strip()
    gate.save(update_fields=["state", "review_round", "submitted_at", "decision_note"])
    event = _record_gate(actor, Action.GATE_SUBMIT, gate, before, reason=gate.decision_note)
    signoffs.supersede(
        gate, actor=actor, event=event, cause=f"review round {gate.review_round} started"
    )
    return gate


def open_next_phase(gate: Gate, now: datetime.datetime) -> str | None:
    """After `gate` is approved: open the next phase's gate (if still locked) and move the
    project's current phase. Returns the phase opened, if any."""
    following = Phase(gate.phase).next
    opened = 0
    if following is not None:
        opened = Gate.objects.filter(
            project=gate.project_id, phase=following, state=Gate.State.LOCKED
        ).update(state=Gate.State.OPEN, opened_at=now)
    refresh_current_phase(gate.project)
    return following.value if opened else None


@transaction.atomic
def gate_start_review_cycle(*, actor: User, gate: Gate) -> Gate:
    """Reopen the approved monitoring gate for its next periodic review.

    Done monitoring items go back to in progress: each review confirms them afresh, with the
    earlier evidence still attached.
    """
    gate = _lock_gate(gate)
    require_project_perm(actor, "start_review", gate.project)
    if gate.phase != Phase.MONITORING:
        raise ValidationError("Only the monitoring gate recurs for periodic reviews.")
    _require_state(gate, (Gate.State.APPROVED,), "reopened for a periodic review")
    before = snapshot(gate, GATE_FIELDS)
    gate.state = Gate.State.OPEN
    gate.cycle += 1
    gate.opened_at = timezone.now()
    gate.save(update_fields=["state", "cycle", "opened_at"])
    reopened = gate.items.filter(status=Status.DONE)
    reopened_keys = list(reopened.values_list("key", flat=True))
    reopened.update(status=Status.IN_PROGRESS, updated_by=actor, updated_at=timezone.now())
    refresh_current_phase(gate.project)
    event = _record_gate(
        actor,
        Action.GATE_START_REVIEW_CYCLE,
        gate,
        before,
        extra={"items_back_in_progress": reopened_keys},
    )
    signoffs.supersede(
        gate,
        actor=actor,
        event=event,
        cause=f"periodic review {gate.cycle} started",
        all_rounds=True,
    )
    return gate


GATE_FIELDS = ("state", "review_round", "cycle")


def _record_gate(
    actor: User,
    action: str,
    gate: Gate,
    before: dict,
    *,
    reason: str = "",
    extra: dict | None = None,
) -> AuditEvent:
    return record(
        actor=actor,
        action=action,
        project=gate.project,
        target=gate,
        target_text=f"{gate.phase_enum.label} gate",
        before=before,
        after={**snapshot(gate, GATE_FIELDS), **(extra or {})},
        reason=reason,
    )


# --- Model and dataset versions -----------------------------------------------------------


def _create_unique(
    actor: User, instance: ModelVersion | DatasetVersion, action: str, fields: tuple[str, ...]
) -> None:
    instance.full_clean()
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise ValidationError(
            {"label": f"The label “{instance.label}” is already used in this project."}
        ) from None
    record(
        actor=actor,
        action=action,
        project=instance.project,
        target=instance,
        after=snapshot(instance, fields),
    )


@transaction.atomic
def model_version_create(
    *,
    actor: User,
    project: Project,
    label: str,
    base_model: str,
    adaptation: str,
    notes: str = "",
) -> ModelVersion:
    """Register a model version (base model plus adaptation approach)."""
    require_project_perm(actor, "manage_versions", project)
    version = ModelVersion(
        project=project,
        label=label.strip(),
        base_model=base_model.strip(),
        adaptation=adaptation,
        notes=notes,
        created_by=actor,
    )
    _create_unique(
        actor,
        version,
        Action.MODEL_VERSION_CREATE,
        ("label", "base_model", "adaptation", "notes"),
    )
    return version


@transaction.atomic
def dataset_version_create(
    *,
    actor: User,
    project: Project,
    label: str,
    purpose: str,
    row_count: int,
    sha256: str,
    description: str = "",
) -> DatasetVersion:
    """Register a dataset version with its row count and content SHA-256."""
    require_project_perm(actor, "manage_versions", project)
    version = DatasetVersion(
        project=project,
        label=label.strip(),
        purpose=purpose,
        row_count=row_count,
        sha256=sha256.strip().lower(),
        description=description,
        created_by=actor,
    )
    _create_unique(
        actor,
        version,
        Action.DATASET_VERSION_CREATE,
        ("label", "purpose", "row_count", "sha256", "description"),
    )
    return version


# --- Checklist templates ------------------------------------------------------------------


def _require_global(actor: User, perm: str, what: str) -> None:
    if not actor.is_active or not actor.has_perm(perm):
        raise PermissionDenied(f"You are not allowed to {what}.")


@transaction.atomic
def checklist_template_create_version(
    *, actor: User, source: ChecklistTemplate, version: str, name: str = ""
) -> ChecklistTemplate:
    """Start a new template version as a copy of `source`; it is inactive until activated."""
    _require_global(actor, "lifecycle.add_checklisttemplate", "create checklist templates")
    template = ChecklistTemplate(
        version=version.strip(),
        name=(name or source.name).strip(),
        description=source.description,
        created_by=actor,
    )
    template.full_clean()
    template.save()
    TemplateItem.objects.bulk_create(
        TemplateItem(
            template=template,
            phase=item.phase,
            key=item.key,
            title=item.title,
            guidance=item.guidance,
            owner_role=item.owner_role,
            required=item.required,
            evidence_required=item.evidence_required,
            position=item.position,
        )
        for item in source.items.all()
    )
    record(
        actor=actor,
        action=Action.TEMPLATE_CREATE_VERSION,
        project=None,
        target=template,
        after={"version": template.version, "name": template.name, "copied_from": source.version},
    )
    return template


def template_in_use(template: ChecklistTemplate) -> bool:
    return template.is_active or template.projects.exists()


@transaction.atomic
def template_item_save(*, actor: User, item: TemplateItem) -> TemplateItem:
    """Add or change an item of a draft template (never one in use: make a new version)."""
    _require_global(actor, "lifecycle.change_checklisttemplate", "edit checklist templates")
    template = ChecklistTemplate.objects.select_for_update().get(pk=item.template_id)
    if template_in_use(template):
        raise ValidationError(
            f"Template v{template.version} is active or used by projects and cannot change: "
            "create a new version instead."
        )
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
    _require_global(actor, "lifecycle.change_checklisttemplate", "activate checklist templates")
    template = ChecklistTemplate.objects.select_for_update().get(pk=template.pk)
    phases_present = set(template.items.values_list("phase", flat=True))
    missing = [phase.label for phase in Phase if phase not in phases_present]
    if missing:
        raise ValidationError(
            f"Template v{template.version} has no items for: {', '.join(missing)}."
        )
    make_sole_active(template, actor=actor, action=Action.TEMPLATE_ACTIVATE)
    return template


@transaction.atomic
def template_item_delete(*, actor: User, item: TemplateItem) -> None:
    """Remove an item from a draft template (never from one in use)."""
    _require_global(actor, "lifecycle.change_checklisttemplate", "edit checklist templates")
    template = ChecklistTemplate.objects.select_for_update().get(pk=item.template_id)
    if template_in_use(template):
        raise ValidationError(
            f"Template v{template.version} is active or used by projects and cannot change: "
            "create a new version instead."
        )
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


@transaction.atomic
def evaluation_run_start(
    *,
    actor: User,
    gate: Gate,
    model_version: ModelVersion,
    dataset_version: DatasetVersion,
    upload: UploadedFile,
    task: str = "",
    metrics: list[str] | None = None,
    seed: int = 0,
    resamples: int = 1000,
    check_records: bool = True,
) -> EvaluationRun:
    """Store an evaluation file for a gate and queue the job that scores it (after commit).

    With `check_records` the whole file is validated against the record contract first and a
    file that breaks it is refused with its line-precise message, storing nothing. The job
    validates again in any case: a run whose file fails there is marked failed, no results.
    """
    gate = _lock_gate(gate)
    project = gate.project
    require_project_perm(actor, "upload_evaluation", project)
    if gate.state == Gate.State.LOCKED:
        raise ValidationError(
            {"gate": f"The {gate.phase_enum.label} gate is locked: evaluate an open phase."}
        )
    if model_version.project_id != project.pk:
        raise ValidationError({"model_version": f"“{model_version}” is not of this project."})
    if dataset_version.project_id != project.pk:
        raise ValidationError({"dataset_version": f"“{dataset_version}” is not of this project."})
    task = task or project.task_category
    if task not in TASK_PRESETS:
        raise ValidationError({"task": f"“{task}” is not a task category."})
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        raise ValidationError({"metrics": f"Unknown metric(s): {', '.join(unknown)}."})
    if not 1 <= resamples <= 10_000:
        raise ValidationError({"resamples": "Use between 1 and 10,000 bootstrap resamples."})
    name, size, digest = _hash_upload(
        upload, "file", settings.EVALUATION_MAX_BYTES, "EVALUATION_MAX_BYTES"
    )
    if check_records:
        _check_records(upload, name, task, metrics)
    run = EvaluationRun(
        project=project,
        gate=gate,
        model_version=model_version,
        dataset_version=dataset_version,
        original_name=name[:255],
        size=size,
        sha256=digest,
        task=task,
        metrics=list(metrics or []),
        seed=seed,
        resamples=resamples,
        requested_by=actor,
    )
    run.file.save(name, upload, save=False)
    try:
        run.save()
        record(
            actor=actor,
            action=Action.EVALUATION_START,
            project=project,
            target=run,
            after={
                "gate": gate.phase,
                "file": name,
                "sha256": digest,
                "size": size,
                "model_version": model_version.label,
                "dataset_version": dataset_version.label,
                "task": task,
                "metrics": run.metrics,
                "seed": seed,
                "resamples": resamples,
            },
        )
    except Exception:
        run.file.delete(save=False)
        raise
    enqueue_evaluation(run.pk)
    return run


def _check_records(upload: UploadedFile, name: str, task: str, metrics: list[str] | None) -> None:
    _, strict, optional = resolve_metrics(task, list(metrics) if metrics else None)
    try:
        parse_records(
            upload,
            filename=name,
            metrics=strict,
            limits=Limits.from_settings(settings),
            optional_metrics=optional,
        )
    except RecordError as exc:
        raise ValidationError(
            {"file": ValidationError(str(exc), code="invalid_records", params=_where(exc))}
        ) from None
    finally:
        upload.seek(0)


def _where(exc: RecordError) -> dict:
    return {"line": exc.line, "field": exc.field}


def enqueue_evaluation(run_id: int) -> None:
    """Queue the evaluation job once the surrounding transaction commits (never before: the
    worker must find the run). In the embedded default the job then runs in-process."""
    from lifecycle.tasks import run_evaluation

    transaction.on_commit(lambda: run_evaluation.delay(run_id))


def evaluation_run_claim(*, run_id: int, stale_before: datetime.datetime) -> uuid.UUID | None:
    """Claim a run for this job with one conditional update; None if another job has it or it
    is finished. A running run whose heartbeat is older than `stale_before` lost its worker
    and may be claimed again."""
    token = uuid.uuid4()
    now = timezone.now()
    claimable = Q(status=RunStatus.QUEUED) | Q(
        status=RunStatus.RUNNING, heartbeat_at__lt=stale_before
    )
    claimed = EvaluationRun.objects.filter(claimable, pk=run_id).update(
        status=RunStatus.RUNNING,
        claim_token=token,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        progress=0.0,
        progress_message="started",
    )
    return token if claimed else None


def evaluation_run_heartbeat(
    *, run_id: int, token: uuid.UUID, progress: float, message: str
) -> bool:
    """Report progress; False when the job no longer holds the run (someone reclaimed it)."""
    return bool(
        EvaluationRun.objects.filter(pk=run_id, claim_token=token, status=RunStatus.RUNNING).update(
            progress=min(max(progress, 0.0), 1.0),
            progress_message=message[:200],
            heartbeat_at=timezone.now(),
        )
    )


def _result_rows(run: EvaluationRun, result: dict) -> list[EvaluationResult]:
    def row(metric: str, scope: str, attribute: str, value: str, data: dict) -> EvaluationResult:
        scalar = data.get("value")
        detail = {} if isinstance(scalar, int | float) or scalar is None else {"value": scalar}
        # Non-scalar companions: confusion-matrix labels, the ROC curve, reliability bins.
        detail.update({k: data[k] for k in ("labels", "curve", "bins") if k in data})
        return EvaluationResult(
            run=run,
            metric=metric,
            scope=scope,
            group_attribute=attribute,
            group_value=value,
            value=scalar
            if isinstance(scalar, int | float) and not isinstance(scalar, bool)
            else None,
            ci_low=data.get("ci_low"),
            ci_high=data.get("ci_high"),
            n=data.get("n"),
            reason=data.get("reason") or "",
            warnings=data.get("warnings") or [],
            detail=detail,
        )

    rows = [row(m, ResultScope.OVERALL, "", "", d) for m, d in result.get("metrics", {}).items()]
    for attribute, groups in result.get("groups", {}).items():
        for value, metrics in groups.items():
            rows += [
                row(m, ResultScope.GROUP, attribute, str(value), d) for m, d in metrics.items()
            ]
    for attribute, metrics in result.get("fairness", {}).items():
        rows += [row(m, ResultScope.FAIRNESS, attribute, "", d) for m, d in metrics.items()]
    return rows


@transaction.atomic
def evaluation_run_succeed(*, run_id: int, token: uuid.UUID, result: dict) -> bool:
    """Store a finished run's results, all in one transaction, if this job still holds the run.

    A redelivered or duplicated job finds the run finished or claimed by another token and
    stores nothing. New results change what the gate's signatures cover, so those are
    invalidated (and an approved gate reopens) here too.
    """
    run = EvaluationRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.claim_token != token or run.status != RunStatus.RUNNING:
        return False
    EvaluationResult.objects.bulk_create(_result_rows(run, result))
    run.status = RunStatus.SUCCEEDED
    run.progress, run.progress_message = 1.0, "finished"
    run.provenance = result.get("provenance", {})
    run.warnings = result.get("warnings", [])
    run.n_records = result.get("n_records")
    run.finished_at = timezone.now()
    run.error_message = ""
    run.save(
        update_fields=[
            "status",
            "progress",
            "progress_message",
            "provenance",
            "warnings",
            "n_records",
            "finished_at",
            "error_message",
        ]
    )
    verdicts = evaluations.criteria_verdicts(run.gate, run)
    _record_gate_content_change(
        None,
        run.gate,
        action=Action.EVALUATION_SUCCEED,
        target=run,
        after={
            "n_records": run.n_records,
            "results": run.results.count(),
            "criteria": {v.criterion.expression: v.status for v in verdicts},
        },
        cause=f"evaluation run {run.pk} of {run.model_version} was attached",
    )
    return True


@transaction.atomic
def evaluation_run_fail(*, run_id: int, token: uuid.UUID | None, message: str) -> bool:
    """Mark a run failed with its message (a refused file, an exhausted retry, a time limit)."""
    runs = EvaluationRun.objects.select_for_update().filter(pk=run_id)
    run = runs.first()
    if run is None or run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        return False
    if token is not None and run.claim_token != token:
        return False
    run.status = RunStatus.FAILED
    run.error_message = message
    run.finished_at = timezone.now()
    run.progress_message = "failed"
    run.save(update_fields=["status", "error_message", "finished_at", "progress_message"])
    record(
        actor=None,
        action=Action.EVALUATION_FAIL,
        project=run.project,
        target=run,
        after={"error": message},
    )
    return True


def evaluation_runs_requeue_stuck(
    *, queued_before: datetime.datetime, stale_before: datetime.datetime
) -> list[int]:
    """Queue again the runs stuck in queued (lost messages) and the running ones whose worker
    stopped sending heartbeats. Each is re-enqueued in its own transaction."""
    stuck = list(
        EvaluationRun.objects.filter(
            Q(status=RunStatus.QUEUED, created_at__lt=queued_before)
            | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before)
        ).values_list("pk", "status")
    )
    requeued = []
    for run_id, status in stuck:
        with transaction.atomic():
            run = EvaluationRun.objects.select_for_update().get(pk=run_id)
            if run.status != status:
                continue
            record(
                actor=None,
                action=Action.EVALUATION_REQUEUE,
                project=run.project,
                target=run,
                before={"status": status},
                after={"attempts": run.attempts},
            )
            enqueue_evaluation(run.pk)
            requeued.append(run.pk)
    return requeued


# --- Gate criteria ---------------------------------------------------------------------------

CRITERION_FIELDS = (
    "metric",
    "scope",
    "group_attribute",
    "bound",
    "comparator",
    "threshold",
    "required",
)


def _validate_criterion(criterion: GateCriterion) -> None:
    if criterion.metric not in METRICS:
        raise ValidationError({"metric": f"“{criterion.metric}” is not a metric key."})
    if METRICS[criterion.metric].kind == "matrix":
        raise ValidationError({"metric": f"“{criterion.metric}” has no single value to compare."})
    if criterion.metric in evaluations.FAIRNESS_METRICS and criterion.scope != "overall":
        raise ValidationError(
            {"scope": "Fairness differences are between groups: use the overall scope."}
        )
    criterion.full_clean(exclude=["created_by", "gate"])


@transaction.atomic
def gate_criterion_create(*, actor: User, gate: Gate, **fields: Any) -> GateCriterion:
    """Add a pass/fail criterion on the gate's evaluation (committee chair, safety officer)."""
    gate = _lock_gate(gate)
    require_project_perm(actor, "set_criteria", gate.project)
    criterion = GateCriterion(gate=gate, created_by=actor, **fields)
    _validate_criterion(criterion)
    criterion.save()
    _record_gate_content_change(
        actor,
        gate,
        action=Action.CRITERION_CREATE,
        target=criterion,
        target_text=criterion.expression,
        after=snapshot(criterion, CRITERION_FIELDS),
        cause=f"criterion “{criterion.expression}” was added",
    )
    return criterion


@transaction.atomic
def gate_criterion_update(
    *, actor: User, criterion: GateCriterion, **changes: Any
) -> GateCriterion:
    criterion = (
        GateCriterion.objects.select_for_update()
        .select_related("gate__project")
        .get(pk=criterion.pk)
    )
    require_project_perm(actor, "set_criteria", criterion.gate.project)
    unknown = set(changes) - set(CRITERION_FIELDS)
    if unknown:
        raise ValidationError({field: "This field cannot be changed." for field in unknown})
    before = snapshot(criterion, changes)
    old_expression = criterion.expression
    for field, value in changes.items():
        setattr(criterion, field, value)
    _validate_criterion(criterion)
    criterion.save()
    before, after = changed(before, snapshot(criterion, changes))
    _record_gate_content_change(
        actor,
        criterion.gate,
        action=Action.CRITERION_UPDATE,
        target=criterion,
        target_text=criterion.expression,
        before=before,
        after=after,
        cause=f"criterion “{old_expression}” became “{criterion.expression}”",
    )
    return criterion


@transaction.atomic
def gate_criterion_delete(*, actor: User, criterion: GateCriterion) -> None:
    criterion = (
        GateCriterion.objects.select_for_update()
        .select_related("gate__project")
        .get(pk=criterion.pk)
    )
    require_project_perm(actor, "set_criteria", criterion.gate.project)
    gate, values, expression = (
        criterion.gate,
        snapshot(criterion, CRITERION_FIELDS),
        criterion.expression,
    )
    target_id = criterion.pk
    criterion.delete()
    _record_gate_content_change(
        actor,
        gate,
        action=Action.CRITERION_DELETE,
        target=None,
        target_type="lifecycle.gatecriterion",
        target_id=target_id,
        target_text=expression,
        before=values,
        cause=f"criterion “{expression}” was removed",
    )
