"""API test helpers: a DRF client carrying a personal token."""

from rest_framework.test import APIClient

from governance.services import api_token_create


def client_for(user, **token_options) -> APIClient:
    """An API client authenticated with a fresh personal token of `user`."""
    client = APIClient()
    if user is not None:
        _, raw = api_token_create(actor=user, name="test", **token_options)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client
