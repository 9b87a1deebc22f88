"""Admin for projects and the lifecycle: checklists, templates, gates, sign-off policies,
signatures and evaluations. Every write goes through the concept's services."""

from typing import Any

from django import forms
from django.contrib import admin

from governance.admin import MembershipInline
from governance.admin_base import (
    DraftRowsInline,
    ServiceForm,
    ServiceModelAdmin,
    UniqueInlineFormSet,
    VersionedRulesAdmin,
    action_with_text,
    holds_anywhere,
    projects_where,
)
from governance.models import Project, User
from governance.permissions import has_project_perm
from lifecycle import versioning
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import (
    ChecklistItem,
    ChecklistTemplate,
    Comment,
    Evidence,
    TemplateItem,
)
from lifecycle.checklists.permissions import can_edit_item
from lifecycle.checklists.selectors import checklist_items_for_user
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import (
    DatasetVersion,
    EvaluationResult,
    EvaluationRun,
    ModelVersion,
)
from lifecycle.gates import services as gate_services
from lifecycle.gates import signoffs
from lifecycle.gates.models import Gate, GateCriterion, Signature, SignOffPolicy, SignOffRequirement
from lifecycle.projects import services as project_services


class ChecklistItemForm(ServiceForm):
    class Meta:
        model = ChecklistItem
        fields = ["status", "justification", "assignee"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A read-only view (no change permission) renders no fields at all.
        if self.instance.pk and "assignee" in self.fields:
            self.fields["assignee"].queryset = User.objects.filter(
                memberships__project=self.instance.project_id
            ).distinct()

    def save_via_service(self) -> ChecklistItem:
        item = ChecklistItem.objects.get(pk=self.instance.pk)
        if "assignee" in self.changed_data:
            item = checklist_services.checklist_item_assign(
                actor=self.actor, item=item, assignee=self.cleaned_data["assignee"]
            )
        if {"status", "justification"} & set(self.changed_data):
            item = checklist_services.checklist_item_update(
                actor=self.actor,
                item=item,
                status=self.cleaned_data["status"],
                justification=self.cleaned_data["justification"],
            )
        return item


class EvidenceInline(admin.TabularInline):
    model = Evidence
    extra = 0
    fields = ["kind", "title", "file", "sha256", "size", "url", "note", "added_by", "withdrawn_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class CommentInline(admin.TabularInline):
    model = Comment
    extra = 0
    fields = ["author", "body", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ChecklistItem)
class ChecklistItemAdmin(ServiceModelAdmin):
    form = ChecklistItemForm
    list_display = ["title", "project", "phase", "status", "owner_role", "assignee", "required"]
    list_filter = [
        "phase",
        "status",
        "owner_role",
        "required",
        ("project", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["title", "key", "project__name"]
    list_select_related = ["project", "assignee"]
    readonly_fields = [
        "project",
        "phase",
        "key",
        "title",
        "guidance",
        "owner_role",
        "required",
        "evidence_required",
        "updated_by",
        "updated_at",
    ]
    fields = [*readonly_fields[:8], "status", "justification", "assignee", "updated_by"]
    inlines = [EvidenceInline, CommentInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is None:
            return holds_anywhere(request, "edit_checklist")
        return can_edit_item(request.user, obj)


class EvidenceForm(ServiceForm):
    url = forms.URLField(required=False, assume_scheme="https", max_length=2000)

    class Meta:
        model = Evidence
        fields = ["item", "kind", "title", "file", "url", "note"]

    def save_via_service(self) -> Evidence:
        data = self.cleaned_data
        kind, item, title = data["kind"], data["item"], data["title"]
        if kind == Evidence.Kind.FILE:
            if not data.get("file"):
                raise forms.ValidationError({"file": "Choose the file to upload."})
            return checklist_services.evidence_add_file(
                actor=self.actor, item=item, upload=data["file"], title=title
            )
        if kind == Evidence.Kind.LINK:
            return checklist_services.evidence_add_link(
                actor=self.actor, item=item, url=data["url"], title=title
            )
        return checklist_services.evidence_add_note(
            actor=self.actor, item=item, note=data["note"], title=title
        )


class ItemChoiceAdmin(ServiceModelAdmin):
    """Rows added to a checklist item: offered only to those holding `add_codename` on some
    project, with only the items of those projects to choose from."""

    add_codename = ""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "item":
            kwargs["queryset"] = (
                checklist_items_for_user(request.user)
                .filter(project__in=projects_where(request.user, self.add_codename))
                .select_related("project")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request) -> bool:
        return holds_anywhere(request, self.add_codename)

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Evidence)
class EvidenceAdmin(ItemChoiceAdmin):
    form = EvidenceForm
    project_path = "item__project"
    list_display = ["__str__", "kind", "item", "sha256", "size", "added_by", "added_at", "active"]
    list_filter = ["kind", ("item__project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["item", "added_by"]
    search_fields = ["title", "original_name", "sha256", "url", "note"]
    actions = ["withdraw"]
    add_codename = "add_evidence"

    @admin.display(boolean=True)
    def active(self, obj: Evidence) -> bool:
        return obj.is_active

    def has_withdraw_permission(self, request) -> bool:
        # evidence_withdraw needs add_evidence on the project (and its own rule per row).
        return holds_anywhere(request, "add_evidence")

    @admin.action(
        description="Withdraw selected evidence (asks for a reason)", permissions=["withdraw"]
    )
    def withdraw(self, request, queryset):
        def apply(reason: str) -> None:
            self.run_action(
                request, queryset, checklist_services.evidence_withdraw, "Withdrew", reason=reason
            )

        return action_with_text(
            self, request, queryset, title="Withdraw evidence", label="Reason", apply=apply
        )

    action_argument = "evidence"


class CommentForm(ServiceForm):
    class Meta:
        model = Comment
        fields = ["item", "body"]

    def save_via_service(self) -> Comment:
        return checklist_services.comment_add(
            actor=self.actor, item=self.cleaned_data["item"], body=self.cleaned_data["body"]
        )


@admin.register(Comment)
class CommentAdmin(ItemChoiceAdmin):
    form = CommentForm
    project_path = "item__project"
    list_display = ["item", "author", "created_at", "body"]
    list_select_related = ["item", "author"]
    list_filter = [("item__project", admin.RelatedOnlyFieldListFilter)]
    add_codename = "comment"


@admin.register(Gate)
class GateAdmin(ServiceModelAdmin):
    list_display = ["project", "phase", "state", "review_round", "cycle", "decided_at"]
    list_filter = ["state", "phase", ("project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["project"]
    readonly_fields = [
        "project",
        "phase",
        "state",
        "review_round",
        "cycle",
        "opened_at",
        "submitted_at",
        "decided_at",
        "decided_by",
        "decision_note",
        "reopened_at",
        "reopened_reason",
    ]
    actions = ["submit", "start_review_cycle"]
    action_argument = "gate"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_submit_permission(self, request) -> bool:
        return holds_anywhere(request, "submit_gate")

    def has_start_review_cycle_permission(self, request) -> bool:
        return holds_anywhere(request, "start_review")

    @admin.action(description="Submit selected gates for review", permissions=["submit"])
    def submit(self, request, queryset):
        self.run_action(request, queryset, gate_services.gate_submit, "Submitted")

    @admin.action(
        description="Start the next periodic review (monitoring gate)",
        permissions=["start_review_cycle"],
    )
    def start_review_cycle(self, request, queryset):
        self.run_action(request, queryset, gate_services.gate_start_review_cycle, "Reopened")


class ModelVersionForm(ServiceForm):
    class Meta:
        model = ModelVersion
        fields = ["project", "label", "base_model", "adaptation", "notes"]

    def save_via_service(self) -> ModelVersion:
        return evaluation_services.model_version_create(actor=self.actor, **self.cleaned_data)


class VersionAdmin(ServiceModelAdmin):
    list_select_related = ["project", "created_by"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter)]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "project":
            kwargs["queryset"] = projects_where(request.user, "manage_versions")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request) -> bool:
        return holds_anywhere(request, "manage_versions")

    def has_change_permission(self, request, obj=None) -> bool:
        # Versions are what evaluations point at: registered once, never edited.
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(VersionAdmin):
    form = ModelVersionForm
    list_display = ["label", "project", "base_model", "adaptation", "created_by", "created_at"]


class DatasetVersionForm(ServiceForm):
    class Meta:
        model = DatasetVersion
        fields = ["project", "label", "purpose", "row_count", "sha256", "description"]

    def save_via_service(self) -> DatasetVersion:
        return evaluation_services.dataset_version_create(actor=self.actor, **self.cleaned_data)


@admin.register(DatasetVersion)
class DatasetVersionAdmin(VersionAdmin):
    form = DatasetVersionForm
    list_display = ["label", "project", "purpose", "row_count", "sha256", "created_at"]


class TemplateItemFormSet(UniqueInlineFormSet):
    unique_fields = ("key",)


class TemplateItemInline(DraftRowsInline, admin.StackedInline):
    model = TemplateItem
    change_permission = "lifecycle.change_checklisttemplate"
    formset = TemplateItemFormSet
    extra = 0
    fields = [
        "phase",
        "position",
        "key",
        "title",
        "guidance",
        "owner_role",
        "required",
        "evidence_required",
    ]

    def in_use(self, obj: ChecklistTemplate) -> bool:
        return versioning.in_use(obj)


@admin.register(ChecklistTemplate)
class ChecklistTemplateAdmin(VersionedRulesAdmin):
    """Templates are global (not per project); a new version starts as a copy."""

    change_permission = "lifecycle.change_checklisttemplate"
    create_permission = "lifecycle.add_checklisttemplate"
    list_display = ["version", "name", "is_active", "item_count", "created_at", "created_by"]
    readonly_fields = ["version", "name", "description", "is_active", "created_at", "created_by"]
    inlines = [TemplateItemInline]

    @admin.display(description="items")
    def item_count(self, obj: ChecklistTemplate) -> int:
        return obj.items.count()

    def create_version(self, actor, source, version):
        return checklist_services.checklist_template_create_version(
            actor=actor, source=source, version=version
        )

    def activate_version(self, actor, obj) -> None:
        checklist_services.checklist_template_activate(actor=actor, template=obj)

    def save_row(self, actor, row, parent) -> None:
        row.template = parent
        checklist_services.template_item_save(actor=actor, item=row)

    def delete_row(self, actor, row) -> None:
        checklist_services.template_item_delete(actor=actor, item=row)


class EvaluationRunForm(ServiceForm):
    upload = forms.FileField(label="Records file (.jsonl or .csv)")
    metrics_text = forms.CharField(
        label="Metrics",
        required=False,
        help_text="Comma-separated metric keys; empty uses the task category's preset.",
    )

    service_fields = {"file": "upload"}

    class Meta:
        model = EvaluationRun
        fields = ["gate", "model_version", "dataset_version", "task", "seed", "resamples"]

    def _metrics(self) -> list[str]:
        text = self.cleaned_data.get("metrics_text", "")
        return [m.strip() for m in text.split(",") if m.strip()]

    def _upload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "gate": data["gate"],
            "model_version": data["model_version"],
            "dataset_version": data["dataset_version"],
            "upload": data["upload"],
            "task": data.get("task") or "",
            "metrics": self._metrics(),
            "seed": data["seed"],
            "resamples": data["resamples"],
        }

    def check_via_service(self) -> evaluation_services.EvaluationUpload:
        # Reads the whole file: the admin runs this before it opens its transaction.
        return evaluation_services.evaluation_upload_check(user=self.actor, **self._upload())

    def save_via_service(self) -> EvaluationRun:
        return evaluation_services.evaluation_run_start(
            actor=self.actor, checked=self.checked, **self._upload()
        )


class EvaluationResultInline(admin.TabularInline):
    model = EvaluationResult
    extra = 0
    fields = [
        "metric",
        "scope",
        "group_attribute",
        "group_value",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "reason",
        "warnings",
    ]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ServiceModelAdmin):
    """Upload here (or through the API); the job scores the file in the background."""

    form = EvaluationRunForm
    list_display = [
        "pk",
        "project",
        "gate",
        "model_version",
        "dataset_version",
        "status",
        "progress",
        "created_at",
    ]
    list_filter = ["status", ("project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["project", "gate", "model_version", "dataset_version"]
    inlines = [EvaluationResultInline]
    readonly_fields = [
        "project",
        "gate",
        "model_version",
        "dataset_version",
        "original_name",
        "size",
        "sha256",
        "task",
        "metrics",
        "seed",
        "resamples",
        "status",
        "progress",
        "progress_message",
        "error_message",
        "n_records",
        "warnings",
        "provenance",
        "attempts",
        "requeued_at",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
    ]

    def get_fields(self, request, obj=None):
        if obj is None:
            return [
                "gate",
                "model_version",
                "dataset_version",
                "upload",
                "task",
                "metrics_text",
                "seed",
                "resamples",
            ]
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def has_add_permission(self, request) -> bool:
        return holds_anywhere(request, "upload_evaluation")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        visible = projects_where(request.user, "upload_evaluation")
        if db_field.name == "gate":
            kwargs["queryset"] = Gate.objects.filter(project__in=visible).select_related("project")
        if db_field.name == "model_version":
            kwargs["queryset"] = ModelVersion.objects.filter(project__in=visible)
        if db_field.name == "dataset_version":
            kwargs["queryset"] = DatasetVersion.objects.filter(project__in=visible)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class GateCriterionForm(ServiceForm):
    class Meta:
        model = GateCriterion
        fields = [
            "gate",
            "metric",
            "scope",
            "group_attribute",
            "bound",
            "comparator",
            "threshold",
            "required",
        ]

    def save_via_service(self) -> GateCriterion:
        data = dict(self.cleaned_data)
        if self.instance.pk is None:
            return gate_services.gate_criterion_create(actor=self.actor, **data)
        data.pop("gate", None)
        original = GateCriterion.objects.get(pk=self.instance.pk)
        changes = {k: v for k, v in data.items() if getattr(original, k) != v}
        return gate_services.gate_criterion_update(actor=self.actor, criterion=original, **changes)


@admin.register(GateCriterion)
class GateCriterionAdmin(ServiceModelAdmin):
    form = GateCriterionForm
    project_path = "gate__project"
    list_display = ["expression", "gate", "required", "created_by", "created_at"]
    list_select_related = ["gate__project", "created_by"]
    list_filter = ["required", ("gate__project", admin.RelatedOnlyFieldListFilter)]

    def get_readonly_fields(self, request, obj=None):
        return ["gate"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "gate":
            kwargs["queryset"] = Gate.objects.filter(
                project__in=projects_where(request.user, "set_criteria")
            ).select_related("project")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request) -> bool:
        return holds_anywhere(request, "set_criteria")

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is None:
            return holds_anywhere(request, "set_criteria")
        return has_project_perm(request.user, "set_criteria", obj.gate.project)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.has_change_permission(request, obj)

    def delete_model(self, request, obj) -> None:
        gate_services.gate_criterion_delete(actor=request.user, criterion=obj)

    def delete_queryset(self, request, queryset) -> None:
        for criterion in queryset:
            gate_services.gate_criterion_delete(actor=request.user, criterion=criterion)


class ProjectForm(ServiceForm):
    class Meta:
        model = Project
        fields = [
            "name",
            "slug",
            "description",
            "clinical_setting",
            "intended_use",
            "intended_users",
            "task_category",
            "risk_tier",
        ]

    def save_via_service(self) -> Project:
        data = {
            field: self.cleaned_data[field]
            for field in project_services.PROJECT_EDITABLE_FIELDS
            if field in self.cleaned_data
        }
        if self.instance.pk is None:
            return project_services.project_create(
                actor=self.actor, slug=self.cleaned_data["slug"], **data
            )
        original = Project.objects.get(pk=self.instance.pk)
        changes = {
            field: value for field, value in data.items() if getattr(original, field) != value
        }
        return project_services.project_update(actor=self.actor, project=original, **changes)


class GateInline(admin.TabularInline):
    model = Gate
    extra = 0
    fields = ["phase", "state", "review_round", "cycle", "opened_at", "decided_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ["label", "base_model", "adaptation", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class DatasetVersionInline(ModelVersionInline):
    model = DatasetVersion
    fields = ["label", "purpose", "row_count", "sha256", "created_by", "created_at"]
    readonly_fields = fields


@admin.register(Project)
class ProjectAdmin(ServiceModelAdmin):
    form = ProjectForm
    project_path = ""
    list_display = ["name", "task_category", "risk_tier", "current_phase", "owner", "updated_at"]
    list_filter = ["current_phase", "risk_tier", "task_category"]
    search_fields = ["name", "slug", "clinical_setting"]
    readonly_fields = ["owner", "current_phase", "checklist_template", "created_at", "updated_at"]
    inlines = [GateInline, MembershipInline, ModelVersionInline, DatasetVersionInline]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "slug"] if obj else self.readonly_fields

    def has_add_permission(self, request) -> bool:
        return request.user.is_active and request.user.has_perm("governance.add_project")

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is None:
            return holds_anywhere(request, "change_project")
        return has_project_perm(request.user, "change_project", obj)


@admin.register(Signature)
class SignatureAdmin(ServiceModelAdmin):
    """Signatures are shown with their manifestation and whether they still hold; they are
    made on the gate pages (re-authentication), never here."""

    project_path = "gate__project"
    list_display = ["manifestation", "gate", "review_round", "still_valid"]
    list_filter = ["meaning", "role", ("gate__project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["gate__project", "signer"]
    fields = [
        "manifestation",
        "gate",
        "review_round",
        "signer",
        "role",
        "meaning",
        "reason",
        "signed_at",
        "manifest_sha256",
        "record_sha256",
        "verification",
        "manifest",
    ]
    readonly_fields = fields

    @admin.display(description="signature")
    def manifestation(self, obj: Signature) -> str:
        return obj.manifestation

    @admin.display(description="valid", boolean=True)
    def still_valid(self, obj: Signature) -> bool:
        return signoffs.verify(obj).valid

    @admin.display(description="verification")
    def verification(self, obj: Signature) -> str:
        verdict = signoffs.verify(obj)
        return "Valid: record and manifest match." if verdict.valid else "; ".join(verdict.reasons)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class RequirementFormSet(UniqueInlineFormSet):
    unique_fields = ("phase", "risk_tier", "role")


class SignOffRequirementInline(DraftRowsInline, admin.TabularInline):
    model = SignOffRequirement
    change_permission = "governance.change_signoffpolicy"
    formset = RequirementFormSet
    extra = 0
    fields = ["phase", "risk_tier", "role"]

    def in_use(self, obj: SignOffPolicy) -> bool:
        return versioning.in_use(obj)


@admin.register(SignOffPolicy)
class SignOffPolicyAdmin(VersionedRulesAdmin):
    """Which roles must approve each gate, per risk tier. A policy in use is frozen: copy it
    to a new version, edit the draft, then activate it for new projects."""

    change_permission = "governance.change_signoffpolicy"
    create_permission = "governance.change_signoffpolicy"
    list_display = ["version", "name", "is_active", "created_at", "created_by"]
    readonly_fields = ["version", "name", "is_active", "created_at", "created_by"]
    inlines = [SignOffRequirementInline]

    def create_version(self, actor, source, version):
        return gate_services.signoff_policy_create_version(
            actor=actor, source=source, version=version
        )

    def activate_version(self, actor, obj) -> None:
        gate_services.signoff_policy_activate(actor=actor, policy=obj)

    def save_row(self, actor, row, parent) -> None:
        row.policy = parent
        gate_services.signoff_requirement_save(actor=actor, requirement=row)

    def delete_row(self, actor, row) -> None:
        gate_services.signoff_requirement_delete(actor=actor, requirement=row)
