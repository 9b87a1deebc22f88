"""OpenAPI descriptions drf-spectacular cannot infer: the token authentication, the error
responses every endpoint may give, the Idempotency-Key header, and the path parameters.

Kept free of view imports: the views' base class uses `ApiAutoSchema`.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

from lifecycle.phases import Phase


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "governance.api.authentication.TokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (profile page): `Authorization: Bearer lgv_…`.",
        }


ERROR_SCHEMA = {
    "type": "object",
    "description": "The one error body of the API (docs/api.md).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer", "description": "The HTTP status, repeated."},
                "code": {
                    "type": "string",
                    "description": "Stable and machine-readable: invalid, invalid_records, "
                    "not_authenticated, authentication_failed, permission_denied, not_found, "
                    "throttled, idempotency_key_reused, in_progress, …",
                },
                "message": {"type": "string", "description": "For people."},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    "description": "Each refused input field (or header) with its messages.",
                },
                "line": {
                    "type": "integer",
                    "nullable": True,
                    "description": "A refused records file: the line at fault.",
                },
                "field": {
                    "type": "string",
                    "nullable": True,
                    "description": "A refused records file: the record field at fault.",
                },
            },
            "required": ["status", "code", "message"],
        }
    },
    "required": ["error"],
}

ERRORS = {
    400: "Invalid request: `fields` names each refused field; a refused records file adds "
    "`line` and `field`.",
    401: "No credentials, or an unknown, expired or revoked token.",
    403: "Not allowed: the caller's roles on the project, a read-only token, or a browser "
    "session without its CSRF token.",
    404: "No such object, a project the caller may not see, or a page past the last one.",
    409: "The first request with this Idempotency-Key is still running.",
    415: "Unsupported Content-Type.",
    422: "This Idempotency-Key was used for another request.",
    429: "Too many requests for this token: retry after `Retry-After` seconds.",
}

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "maxLength": 200},
    OpenApiParameter.HEADER,
    description="Any unique string per logical request (at most 200 characters). A retry with "
    "the same key gets the first response back, with `Idempotent-Replayed: true`, instead of "
    "creating a second object.",
)

PATH_PARAMETERS = {
    "slug": OpenApiParameter(
        "slug",
        {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"},
        OpenApiParameter.PATH,
        description="The project's slug, e.g. ed-triage-assistant.",
    ),
    "phase": OpenApiParameter(
        "phase",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        enum=Phase.values,
        description="The lifecycle phase whose gate is meant.",
    ),
    "key": OpenApiParameter(
        "key",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description="A checklist item's key, e.g. planning.data-privacy-plan.",
    ),
    "id": OpenApiParameter(
        "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The object's id."
    ),
}


class ApiAutoSchema(AutoSchema):
    """Every operation also lists the errors it may answer (in the one error body), typed path
    parameters, and for idempotent creations the Idempotency-Key header."""

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        parameters += [p for name, p in PATH_PARAMETERS.items() if f"{{{name}}}" in self.path]
        if self.method == "POST" and getattr(self.view, "idempotent", False):
            parameters.append(IDEMPOTENCY_KEY)
            parameters.append(
                OpenApiParameter(
                    "Idempotent-Replayed",
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    response=[200, 201, 202],
                    description="`true` on a replay of the first response to this key.",
                )
            )
        parameters.append(
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[429],
                description="Seconds until the token's request budget allows another request.",
            )
        )
        return parameters

    def error_codes(self) -> list[int]:
        view, writes = self.view, self.method not in ("GET", "HEAD", "OPTIONS")
        # 400 for every operation: a NUL in any query parameter is refused (config.hardening).
        codes = [400, 401, 429]
        if writes or getattr(view, "reads_need_permission", False):
            codes.append(403)
        if "{" in self.path or self._is_list_view():
            codes.append(404)
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append(415)
        if self.method == "POST" and getattr(view, "idempotent", False):
            codes += [409, 422]
        return sorted(codes)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        component = ResolvedComponent(
            name="Error", type=ResolvedComponent.SCHEMA, object="Error", schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(component)
        for code in self.error_codes():
            responses.setdefault(
                str(code),
                {
                    "content": {"application/json": {"schema": component.ref}},
                    "description": ERRORS[code],
                    **(
                        {"headers": self._get_response_headers_for_code(str(code), direction)}
                        if code == 429
                        else {}
                    ),
                },
            )
        return responses
