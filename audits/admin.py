"""Read-only admin of the audit trail, restricted like every other read."""

import json

from django.contrib import admin
from guardian.shortcuts import get_objects_for_user

from audits.models import AuditEvent
from governance.admin_base import holds_anywhere
from governance.models import Project


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["recorded_at", "chain", "sequence", "action", "actor_type", "actor", "target"]
    list_filter = ["action", "actor_type", ("chain", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["chain", "actor_user"]
    search_fields = ["target_id", "payload"]
    date_hierarchy = "recorded_at"
    fields = [
        "chain",
        "sequence",
        "recorded_at",
        "actor_type",
        "actor",
        "actor_token_id",
        "action",
        "target",
        "before",
        "after",
        "reason",
        "request_id",
        "ip_address",
        "user_agent",
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

    @admin.display(description="before")
    def before(self, event: AuditEvent) -> str:
        return _pretty(event.before)

    @admin.display(description="after")
    def after(self, event: AuditEvent) -> str:
        return _pretty(event.after)

    @admin.display(description="reason or comment")
    def reason(self, event: AuditEvent) -> str:
        return event.reason or "—"

    @admin.display(description="request id")
    def request_id(self, event: AuditEvent) -> str:
        return event.request_id or "—"

    @admin.display(description="IP address")
    def ip_address(self, event: AuditEvent) -> str:
        return event.ip_address or "—"

    @admin.display(description="user agent")
    def user_agent(self, event: AuditEvent) -> str:
        return event.user_agent or "—"

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
        # Listed only for those who may read some trail: the global permission, or the
        # project permission on at least one project (the rule of get_queryset).
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (user.has_perm("audits.view_auditevent") or holds_anywhere(request, "view_audit"))
        )

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _pretty(value) -> str:
    return "—" if value is None else json.dumps(value, indent=1, ensure_ascii=False)
