"""Admin for users, projects and memberships; every write goes through the services."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect

from governance import services
from governance.admin_base import ServiceForm, ServiceModelAdmin
from governance.models import Membership, Project, User
from governance.permissions import has_project_perm
from governance.selectors import projects_for_user
from lifecycle.models import DatasetVersion, Gate, ModelVersion

admin.site.site_header = "LLM governance — administration"
admin.site.site_title = "LLM governance"
admin.site.disable_action("delete_selected")

admin.site.register(User, UserAdmin)


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
            for field in services.PROJECT_EDITABLE_FIELDS
            if field in self.cleaned_data
        }
        if self.instance.pk is None:
            return services.project_create(actor=self.actor, slug=self.cleaned_data["slug"], **data)
        original = Project.objects.get(pk=self.instance.pk)
        changes = {
            field: value for field, value in data.items() if getattr(original, field) != value
        }
        return services.project_update(actor=self.actor, project=original, **changes)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "added_at", "added_by"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


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
        return request.user.has_perm("governance.add_project")

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is None:
            return request.user.is_staff
        return has_project_perm(request.user, "change_project", obj)


class MembershipForm(ServiceForm):
    class Meta:
        model = Membership
        fields = ["project", "user", "role"]

    def save_via_service(self) -> Membership:
        return services.membership_add(
            actor=self.actor,
            project=self.cleaned_data["project"],
            user=self.cleaned_data["user"],
            role=self.cleaned_data["role"],
        )


@admin.register(Membership)
class MembershipAdmin(ServiceModelAdmin):
    form = MembershipForm
    list_display = ["user", "role", "project", "added_at", "added_by"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "project__name"]
    list_select_related = ["user", "project", "added_by"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "project":
            kwargs["queryset"] = projects_for_user(request.user)
        if db_field.name == "user":
            kwargs["queryset"] = User.objects.filter(is_active=True).order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request) -> bool:
        return request.user.is_staff

    def has_change_permission(self, request, obj=None) -> bool:
        # A role is added or removed, never edited in place.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is None:
            return request.user.is_staff
        return has_project_perm(request.user, "manage_members", obj.project)

    def delete_model(self, request, obj) -> None:
        services.membership_remove(actor=request.user, membership=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.path)
