"""Binds the audit context (request id, client IP, user agent) for each request."""

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from audits.context import AuditContext, bind

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the address our own trusted proxies put in X-Forwarded-For.

    Only the last TRUSTED_PROXY_COUNT hops are ours; anything further left was written by the
    client and is not trusted.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR") or None


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else str(uuid.uuid4())
        context = AuditContext(
            request_id=request_id,
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:500],
        )
        request.request_id = request_id
        with bind(context):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
