"""Thin views of the governance pages: read through selectors, call services, render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance import services, totp
from governance.admin_base import add_service_errors
from governance.forms import ApiTokenForm, RecoveryCodesForm, TotpConfirmForm, TotpRemoveForm
from governance.lockout import LockedOut
from governance.selectors import projects_for_user


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own page: two-step verification (an authenticator app and its recovery codes,
    set up and removed here) and personal API tokens (created here, shown once, revocable).
    Every form posts here; its `action` says which (none: creating a token)."""
    action = request.POST.get("action", "token") if request.method == "POST" else ""
    if action in _TWO_STEP_ACTIONS:
        return _TWO_STEP_ACTIONS[action](request)
    visible = projects_for_user(request.user).order_by("name")
    form = ApiTokenForm(request.POST if action == "token" else None, projects=visible)
    secret = None
    if action == "token" and form.is_valid():
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
    return _account_page(request, form=form, secret=secret)


def _account_page(
    request: HttpRequest,
    *,
    status: int = 200,
    form: ApiTokenForm | None = None,
    secret: str | None = None,
    recovery_codes: list[str] | None = None,
    **two_step_forms: object,
) -> HttpResponse:
    two_step = totp.status_of(request.user)
    context: dict[str, object] = {
        "form": form or ApiTokenForm(projects=projects_for_user(request.user).order_by("name")),
        "secret": secret,
        "tokens": request.user.api_tokens.prefetch_related("projects").order_by("-created_at"),
        "now": timezone.now(),
        "two_step": two_step,
        "recovery_codes": recovery_codes,
        "confirm_form": TotpConfirmForm(prefix="confirm"),
        "codes_form": RecoveryCodesForm(prefix="codes"),
        "remove_form": TotpRemoveForm(prefix="remove"),
        **two_step_forms,
    }
    if two_step.pending is not None and not two_step.enabled:
        # The key is shown only to its owner and only until the app is confirmed.
        context["qr_code"] = totp.qr_code_data_uri(two_step.pending)
        context["manual_secret"] = totp.secret_for_manual_entry(two_step.pending)
    return render(request, "governance/account.html", context, status=status)


def _two_step_url() -> str:
    return reverse("account") + "#two-step"


def _two_step_start(request: HttpRequest) -> HttpResponse:
    try:
        totp.enrolment_start(actor=request.user)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect(_two_step_url())


def _two_step_confirm(request: HttpRequest) -> HttpResponse:
    form = TotpConfirmForm(request.POST, prefix="confirm")
    if form.is_valid():
        try:
            codes = totp.enrolment_confirm(actor=request.user, code=form.cleaned_data["code"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Two-step verification is on: signing now asks for a code.")
            return _account_page(request, recovery_codes=codes)
    return _account_page(request, confirm_form=form, status=400)


def _two_step_regenerate(request: HttpRequest) -> HttpResponse:
    form = RecoveryCodesForm(request.POST, prefix="codes")
    if form.is_valid():
        try:
            codes = totp.recovery_codes_regenerate(
                actor=request.user, password=form.cleaned_data["password"]
            )
        except LockedOut as exc:
            form.add_error(None, str(exc))
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "New recovery codes made: the old ones no longer work.")
            return _account_page(request, recovery_codes=codes)
    return _account_page(request, codes_form=form, status=400)


def _two_step_remove(request: HttpRequest) -> HttpResponse:
    form = TotpRemoveForm(request.POST, prefix="remove")
    if form.is_valid():
        try:
            totp.totp_remove(
                actor=request.user,
                password=form.cleaned_data["password"],
                code=form.cleaned_data["code"],
            )
        except LockedOut as exc:
            form.add_error(None, str(exc))
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, "Two-step verification removed: signing asks for your password only."
            )
            return redirect(_two_step_url())
    return _account_page(request, remove_form=form, status=400)


_TWO_STEP_ACTIONS = {
    "totp-start": _two_step_start,
    "totp-confirm": _two_step_confirm,
    "recovery-codes": _two_step_regenerate,
    "totp-remove": _two_step_remove,
}


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
