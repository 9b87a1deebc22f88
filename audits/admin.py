"""Read-only admin of the audit trail, restricted like every other read."""

from django.contrib import admin
from guardian.shortcuts import get_objects_for_user

from audits.models import AuditEvent
from governance.models import Project


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["recorded_at", "chain", "sequence", "action", "actor_type", "actor", "target"]
    list_filter = ["action", "actor_type", "chain"]
    list_select_related = ["chain", "actor_user"]
    search_fields = ["target_id", "payload"]
    date_hierarchy = "recorded_at"
    fields = [
        "chain",
        "sequence",
        "recorded_at",
        "actor_type",
        "actor_user",
        "actor_token_id",
        "action",
        "target_type",
        "target_id",
        "payload",
        "prev_hash",
        "hash",
    ]
    readonly_fields = fields

    @admin.display(description="actor")
    def actor(self, event: AuditEvent) -> str:
        return event.actor_name

    @admin.display(description="target")
    def target(self, event: AuditEvent) -> str:
        return f"{event.target_type} {event.target_id}: {event.target_text}"

    def get_queryset(self, request):
        events = super().get_queryset(request)
        user = request.user
        if user.has_perm("audits.view_auditevent"):
            return events  # global auditors read every chain
        auditable = get_objects_for_user(
            user, "governance.view_audit", klass=Project, accept_global_perms=False
        )
        return events.filter(chain__project__in=auditable)

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
