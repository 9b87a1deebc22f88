"""What every API view shares: token attribution, project scoping, errors, throttling,
pagination and idempotent retries.

The rules themselves live in the services; this module only adapts HTTP to them.
"""

import hashlib
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, status
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.generics import GenericAPIView
from rest_framework.metadata import SimpleMetadata
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from audits.context import token_context
from governance.lockout import LockedOut
from governance.models import ApiToken, IdempotentRequest, Project
from governance.selectors import projects_for_user

# --- Authentication ---------------------------------------------------------------------------


class TokenScope(BasePermission):
    """Read-only tokens may only read."""

    message = "This API token is read-only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return token is None or not token.read_only or request.method in SAFE_METHODS


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


# --- Errors -----------------------------------------------------------------------------------


def _error(status_code: int, code: str, message: str, **extra: Any) -> dict:
    return {"error": {"status": status_code, "code": code, "message": message, **extra}}


def _messages(detail: Any, where: str = "") -> list[str]:
    """DRF's error detail for one field as plain sentences: a list item's or a nested key's
    errors say where (`[1]: Not a valid string.`), never Python's repr of them."""
    if isinstance(detail, dict):
        return [m for key, value in detail.items() for m in _messages(value, f"{where}[{key}]")]
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item, where)]
    return [f"{where}: {detail}" if where else str(detail)]


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """One error body everywhere: {"error": {"status", "code", "message", "fields"?, ...}}.

    Services raise Django's ValidationError and PermissionDenied; they map to 400 and 403 with
    the services' own messages (429 for a lockout after repeated failed passwords). A refused
    evaluation file adds its line and field.
    """
    if isinstance(exc, DjangoValidationError):
        fields: dict[str, list[str]] = {}
        extra: dict[str, Any] = {}
        if hasattr(exc, "error_dict"):
            for field, errors in exc.error_dict.items():
                fields[field] = [message for error in errors for message in error.messages]
                for error in errors:
                    if error.code == "invalid_records":
                        extra.update(error.params or {})
        message = "; ".join(m for messages in fields.values() for m in messages) or "; ".join(
            exc.messages
        )
        code = "invalid_records" if extra else "invalid"
        body = _error(400, code, message, **({"fields": fields} if fields else {}), **extra)
        return Response(body, status=400)
    if isinstance(exc, LockedOut):
        # Too many failed passwords (signing re-authenticates): the login lockout's 429.
        body = _error(429, "locked_out", str(exc), retry_after=exc.retry_after)
        return Response(body, status=429, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, DjangoPermissionDenied):
        return Response(_error(403, "permission_denied", str(exc) or "Not allowed."), status=403)
    if isinstance(exc, Http404):
        return Response(_error(404, "not_found", "Not found."), status=404)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        fields = {k: _messages(v) for k, v in detail.items()}
        message = "; ".join(f"{k}: {m}" for k, ms in fields.items() for m in ms)
        response.data = _error(response.status_code, "invalid", message, fields=fields)
    else:
        message = detail.get("detail", detail) if isinstance(detail, dict) else detail
        code = getattr(exc, "default_code", "error")
        response.data = _error(response.status_code, str(code), str(message))
    return response


# --- Views ------------------------------------------------------------------------------------


class Metadata(SimpleMetadata):
    """OPTIONS names the endpoint and its formats. The request and response shapes are in the
    OpenAPI schema: DRF's own description would need one serializer per view, and ours have an
    input and an output serializer per method."""

    def determine_actions(self, request: Request, view: APIView) -> dict:
        return {}


class ApiView(GenericAPIView):
    """Base of every endpoint: authenticated, token-scoped, attributed in the audit trail.

    List endpoints set `filterset_class`, `ordering_fields` and `search_fields`, define
    `get_queryset`, and return `self.list_response(queryset, Serializer)`.
    """

    permission_classes = [IsAuthenticated, TokenScope]
    filter_backends = [DjangoFilterBackend, SearchFilter, OrderingFilter]
    pagination_class = Pagination
    metadata_class = Metadata
    # The OpenAPI schema lists 403 for writes; views whose reads need a permission beyond seeing
    # the project (the audit trail) say so here.
    reads_need_permission = False

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset  # schema generation: the model only, no request
        return self.scoped_queryset()

    def scoped_queryset(self):
        raise NotImplementedError

    def list_response(self, queryset, serializer_class, **context: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(queryset))
        data = serializer_class(page, many=True, context={"request": self.request, **context})
        return self.get_paginated_response(data.data)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if any("\x00" in value for value in kwargs.values() if isinstance(value, str)):
            # No slug, phase or item key contains NUL, and PostgreSQL refuses to compare with one.
            raise Http404
        if isinstance(request.auth, ApiToken):
            # Everything the services record for this request names the token too; the
            # middleware's context is restored when the request ends.
            self._token_context = token_context(request.auth.pk)
            self._token_context.__enter__()

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            # Also after an unhandled exception (a 500), which skips finalize_response.
            context = getattr(self, "_token_context", None)
            if context is not None:
                context.__exit__(None, None, None)
                self._token_context = None

    def visible_projects(self):
        """Projects the caller may see, narrowed to the token's projects when it has some."""
        projects = projects_for_user(self.request.user)
        token = self.request.auth
        if isinstance(token, ApiToken) and token.projects.exists():
            projects = projects.filter(pk__in=token.projects.values("pk"))
        return projects

    def get_project(self) -> Project:
        """The project of the URL, or 404 when the caller may not see it (never 403)."""
        try:
            return self.visible_projects().get(slug=self.kwargs["slug"])
        except Project.DoesNotExist:
            raise Http404 from None


class IdempotentCreate:
    """POST with an `Idempotency-Key` header: a retry gets the first response back instead of
    creating a second object. The key is remembered per user, in the same transaction as the
    creation, so a failed request can simply be retried."""

    idempotent = True  # the OpenAPI schema documents the header and its 409 and 422 answers

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return self.create(request, *args, **kwargs)
        if len(key) > 200:
            raise exceptions.ValidationError({"Idempotency-Key": "At most 200 characters."})
        fingerprint = hashlib.sha256(f"{request.method} {request.path}".encode()).hexdigest()
        with transaction.atomic():
            try:
                with transaction.atomic():
                    remembered = IdempotentRequest.objects.create(
                        user=request.user, key=key, fingerprint=fingerprint
                    )
            except IntegrityError:
                return self._replay(request, key, fingerprint)
            response = self.create(request, *args, **kwargs)
            remembered.status_code = response.status_code
            remembered.body = response.data
            remembered.save(update_fields=["status_code", "body"])
        return response

    def _replay(self, request: Request, key: str, fingerprint: str) -> Response:
        first = IdempotentRequest.objects.get(user=request.user, key=key)
        if first.fingerprint != fingerprint:
            return Response(
                _error(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used for another request.",
                ),
                status=422,
            )
        if first.status_code is None:
            return Response(
                _error(409, "in_progress", "The first request with this key is still running."),
                status=status.HTTP_409_CONFLICT,
            )
        headers = {"Idempotent-Replayed": "true"}
        location = self.location(first.body)
        if location:
            headers["Location"] = location
        return Response(first.body, status=first.status_code, headers=headers)

    def location(self, body: Any) -> str | None:
        """The Location header of a success (the view's own, repeated on a replay)."""
        return None
