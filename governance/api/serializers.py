"""Input and output shapes of the governance endpoints (projects and memberships)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.models import Membership
from governance.roles import Role


class UserRef(serializers.Serializer):
    username = serializers.CharField()
    name = serializers.CharField()


@extend_schema_field(UserRef)
class UserField(serializers.Field):
    """A user shown as {"username", "name"}."""

    def to_representation(self, user):
        return {"username": user.get_username(), "name": user.get_full_name()}


class MembershipOut(serializers.ModelSerializer):
    user = UserField()
    added_by = UserField(allow_null=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "added_at", "added_by"]


class MembershipIn(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
