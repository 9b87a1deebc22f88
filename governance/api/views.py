"""Projects and memberships. Thin: parse, call the service, render."""

from django.core.exceptions import ValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from governance import services
from governance.api import serializers as s
from governance.api.base import ApiView
from governance.models import Membership, User


class MembershipList(ApiView):
    queryset = Membership.objects.none()
    filterset_fields = ["role"]
    ordering_fields = ["added_at", "role"]
    ordering = ["role", "id"]

    def scoped_queryset(self):
        return (
            Membership.objects.restrict(self.request.user)
            .filter(project=self.get_project())
            .select_related("user", "added_by")
        )

    @extend_schema(responses=s.MembershipOut(many=True))
    def get(self, request, slug):
        return self.list_response(self.get_queryset(), s.MembershipOut)

    @extend_schema(request=s.MembershipIn, responses={201: s.MembershipOut})
    def post(self, request, slug):
        project = self.get_project()
        data = s.MembershipIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(username=data.validated_data["username"], is_active=True).first()
        if user is None:
            raise ValidationError({"username": "No active user has this username."})
        membership = services.membership_add(
            actor=request.user, project=project, user=user, role=data.validated_data["role"]
        )
        return Response(s.MembershipOut(membership).data, status=status.HTTP_201_CREATED)


class MembershipDetail(ApiView):
    @extend_schema(responses={204: None})
    def delete(self, request, slug, pk):
        membership = (
            Membership.objects.restrict(self.request.user)
            .filter(project=self.get_project(), pk=pk)
            .first()
        )
        if membership is None:
            raise Http404
        services.membership_remove(actor=request.user, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)
