"""Thin views of the governance pages: read through selectors, call services, render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance import services
from governance.admin_base import add_service_errors
from governance.forms import ApiTokenForm
from governance.selectors import projects_for_user


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own page: personal API tokens (created here, shown once, revocable)."""
    visible = projects_for_user(request.user).order_by("name")
    form = ApiTokenForm(request.POST or None, projects=visible)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            token, secret = services.api_token_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                read_only=form.cleaned_data["read_only"],
                projects=form.cleaned_data["projects"],
            )
            form = ApiTokenForm(projects=visible)
            messages.success(request, f"Token “{token.name}” created. Copy it now.")
        except ValidationError as exc:
            add_service_errors(form, exc)
    tokens = request.user.api_tokens.prefetch_related("projects").order_by("-created_at")
    return render(
        request,
        "governance/account.html",
        {"form": form, "secret": secret, "tokens": tokens, "now": timezone.now()},
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = request.user.api_tokens.filter(pk=pk).first()
    if token is None:
        raise Http404("No such token.")
    try:
        services.api_token_revoke(actor=request.user, token=token)
        messages.success(request, f"Token “{token.name}” revoked.")
    except (ValidationError, PermissionDenied) as exc:
        for message in getattr(exc, "messages", [str(exc)]):
            messages.error(request, message)
    return redirect("account")
