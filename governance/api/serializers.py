"""Input and output shapes of the governance endpoints (projects and memberships)."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.models import Membership, Project, RiskTier, TaskCategory
from governance.roles import Role


class UserRef(serializers.Serializer):
    username = serializers.CharField()
    name = serializers.CharField()


@extend_schema_field(UserRef)
class UserField(serializers.Field):
    """A user shown as {"username", "name"}."""

    def to_representation(self, user):
        return {"username": user.get_username(), "name": user.get_full_name()}


class ProjectOut(serializers.ModelSerializer):
    owner = UserField()
    checklist_template = serializers.CharField(source="checklist_template.version")
    signoff_policy = serializers.CharField(source="signoff_policy.version")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "description",
            "owner",
            "clinical_setting",
            "intended_use",
            "intended_users",
            "task_category",
            "risk_tier",
            "current_phase",
            "checklist_template",
            "signoff_policy",
            "created_at",
            "updated_at",
            "url",
        ]

    def get_url(self, project: Project) -> str:
        return self.context["request"].build_absolute_uri(
            reverse("api:project-detail", args=[project.slug])
        )


class ProjectCreateIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.CharField(max_length=80)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    clinical_setting = serializers.CharField(max_length=200)
    intended_use = serializers.CharField()
    intended_users = serializers.CharField(max_length=300)
    task_category = serializers.ChoiceField(choices=TaskCategory.choices)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices)


class ProjectUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    clinical_setting = serializers.CharField(max_length=200, required=False)
    intended_use = serializers.CharField(required=False)
    intended_users = serializers.CharField(max_length=300, required=False)
    task_category = serializers.ChoiceField(choices=TaskCategory.choices, required=False)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)


class MembershipOut(serializers.ModelSerializer):
    user = UserField()
    added_by = UserField(allow_null=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "added_at", "added_by"]


class MembershipIn(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
