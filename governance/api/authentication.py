"""API authentication and throttling by personal token.

Kept apart from the views: Django REST framework imports these classes from its settings
while it is still loading its own view module.
"""

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from governance.models import ApiToken
from governance.services import hash_token


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer lgv_…` (or `Token lgv_…`): a personal API token."""

    keywords = (b"bearer", b"token")

    def authenticate(self, request: Request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send “Authorization: Bearer <token>”.")
        raw = parts[1].decode("latin-1")
        token = ApiToken.objects.select_related("user").filter(key_sha256=hash_token(raw)).first()
        now = timezone.now()
        if token is None or not token.is_usable(now) or not token.user.is_active:
            raise exceptions.AuthenticationFailed("The API token is unknown, expired or revoked.")
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class TokenRateThrottle(SimpleRateThrottle):
    """One request budget per token (or per user for browser sessions, per IP when anonymous)."""

    scope = "api"

    def get_cache_key(self, request: Request, view) -> str:
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
