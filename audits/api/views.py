"""The audit trail over the API: a project's events, filtered, and its export."""

import datetime
import io

import django_filters
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers

from audits.models import AuditEvent
from audits.selectors import audit_timeline
from audits.services import audit_export
from governance.api.base import ApiView
from governance.permissions import has_project_perm


class AuditEventOut(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    actor_name = serializers.CharField(read_only=True)
    target_text = serializers.CharField(read_only=True)
    before = serializers.JSONField(read_only=True)
    after = serializers.JSONField(read_only=True)
    reason = serializers.CharField(read_only=True)
    request_id = serializers.CharField(read_only=True)
    ip_address = serializers.CharField(read_only=True, allow_null=True)
    user_agent = serializers.CharField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "sequence",
            "recorded_at",
            "actor_type",
            "actor",
            "actor_name",
            "actor_token_id",
            "action",
            "target_type",
            "target_id",
            "target_text",
            "before",
            "after",
            "reason",
            "request_id",
            "ip_address",
            "user_agent",
            "prev_hash",
            "hash",
        ]

    def get_actor(self, event: AuditEvent) -> str | None:
        return event.actor_user.get_username() if event.actor_user else None


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, given to the database in UTC: Python accepts offsets up to ±24 hours,
    PostgreSQL only up to ±16."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(datetime.UTC)
        except OverflowError:
            raise ValidationError("This time is out of range.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_user__username")
    since = UtcDateTimeFilter(field_name="recorded_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="recorded_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "target_type", "target_id", "since", "until"]


class AuditEventList(ApiView):
    """The project's audit trail, newest first (for roles that may read it)."""

    queryset = AuditEvent.objects.none()
    reads_need_permission = True
    filterset_class = AuditEventFilter
    ordering_fields = ["sequence", "recorded_at"]

    def scoped_queryset(self):
        project = self.get_project()
        if not has_project_perm(self.request.user, "view_audit", project):
            raise PermissionDenied("You are not allowed to read this project's audit trail.")
        return audit_timeline(self.request.user, project=project)

    @extend_schema(responses=AuditEventOut(many=True))
    def get(self, request, slug):
        return self.list_response(self.get_queryset(), AuditEventOut)


class AuditExport(ApiView):
    """The project's chain as JSON Lines with its hashes; verify it offline with
    `manage.py verify_audit --file`. The export is itself recorded."""

    reads_need_permission = True

    @extend_schema(
        responses={(200, "application/x-ndjson"): OpenApiResponse(description="The chain.")}
    )
    def get(self, request, slug):
        out = io.StringIO()
        chain = audit_export(actor=request.user, project=self.get_project(), out=out)
        response = HttpResponse(out.getvalue(), content_type="application/x-ndjson")
        response["Content-Disposition"] = (
            f'attachment; filename="{chain.key.replace(":", "-")}.jsonl"'
        )
        return response
