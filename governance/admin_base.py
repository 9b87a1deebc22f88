"""Admin plumbing that routes every admin write through the services.

A `ServiceForm` calls its service while the form is validated (inside the admin's own
transaction), so a refused change is shown next to the field instead of as a server error, and
the admin's `save_model` has nothing left to do. A form whose service reads much first (a whole
upload) runs that check before the admin opens its transaction (`check_via_service`).
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from guardian.shortcuts import get_objects_for_user

from governance.models import Project, User
from governance.selectors import projects_for_user


def projects_where(user: User, codename: str) -> QuerySet[Project]:
    """The projects on which `user` holds the project permission `codename` (through a role,
    like `governance.permissions.has_project_perm`; superusers hold every one)."""
    if not user.is_active:
        return Project.objects.none()
    return get_objects_for_user(
        user, f"governance.{codename}", klass=Project, accept_global_perms=False
    )


def holds_anywhere(request: HttpRequest, codename: str) -> bool:
    """Whether the admin user may do what `codename` allows on at least one project: what the
    admin asks before offering Add, Change or an action on a list (the service then checks
    the project of the row). Asked several times per page, so answered once per request."""
    return _once_per_request(
        request, codename, lambda user: projects_where(user, codename).exists()
    )


def sees_any_project(request: HttpRequest) -> bool:
    """Whether the admin user may see at least one project (and so rows in the admin)."""
    return _once_per_request(
        request, "visible project", lambda user: projects_for_user(user).exists()
    )


def _once_per_request(request: HttpRequest, key: str, ask: Callable[[User], bool]) -> bool:
    answers: dict[str, bool] = request.__dict__.setdefault("_admin_project_answers", {})
    if key not in answers:
        user = request.user
        answers[key] = bool(user.is_active and user.is_staff and ask(user))
    return answers[key]


class ServiceForm(forms.ModelForm):
    """A model form whose `save_via_service` performs the write through a service."""

    actor: User
    # The service's error keys that name a form field of another name ({"file": "upload"}).
    service_fields: dict[str, str] = {}
    # Set by `ServiceModelAdmin.changeform_view` from `check_via_service`, run before the
    # admin's transaction: its result for `save_via_service`, or the refusal to show.
    checked: Any = None
    refused: ValidationError | PermissionDenied | None = None
    checking = False

    def check_via_service(self) -> Any:
        """The service's checks that read much (a whole upload), whose result the service takes
        instead of checking again. On SQLite any transaction holds the whole database's write
        lock, so the admin runs them before it opens its own; `save_via_service` then finds
        the result in `self.checked`. None: nothing to check first."""
        return None

    def save_via_service(self) -> Model:
        raise NotImplementedError

    def _post_clean(self) -> None:
        # No model validation here: the service validates, with messages meant for people.
        if self.errors:
            return
        if self.checking:
            try:
                self.checked = self.check_via_service()
            except (ValidationError, PermissionDenied) as exc:
                self.refused = exc
            return
        try:
            if self.refused is not None:
                raise self.refused
            # Several services may run for one form: all of them land, or none.
            with transaction.atomic():
                self.instance = self.save_via_service()
        except ValidationError as exc:
            add_service_errors(self, exc)
        except PermissionDenied as exc:
            self.add_error(None, str(exc))


def refusal_message(exc: Exception) -> str:
    """A service's refusal as one line for an admin message."""
    return "; ".join(getattr(exc, "messages", [str(exc)]))


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Put a service's ValidationError next to the fields it names, the rest on top."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    renamed: dict[str, str] = getattr(form, "service_fields", {})
    for key, errors in exc.message_dict.items():
        field = renamed.get(key, key)
        if field in form.fields:
            form.add_error(field, errors)
        else:
            prefix = "" if field == NON_FIELD_ERRORS else f"{field}: "
            form.add_error(None, [prefix + message for message in errors])


T = TypeVar("T")


def run_service(form: forms.Form, call: Callable[[], T]) -> T | None:
    """The service's result, or None with its refusal put on `form`: a ValidationError next to
    the fields it names, a PermissionDenied on top. The pages' one way to call a service."""
    try:
        return call()
    except ValidationError as exc:
        add_service_errors(form, exc)
    except PermissionDenied as exc:
        form.add_error(None, str(exc))
    return None


class ServiceModelAdmin(admin.ModelAdmin):
    """Admin whose writes go through `ServiceForm.save_via_service` and whose rows are
    restricted to the projects the user may see (`project_path` names the project lookup)."""

    project_path = "project"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        checked, refused = request.__dict__.get("_service_form_check", (None, None))
        return type(
            form.__name__,
            (form,),
            {"actor": request.user, "checked": checked, "refused": refused},
        )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ):
        # Django runs every POST of this view in one transaction, and on SQLite that holds the
        # whole database's write lock: a form's slow checks (reading a large upload) run first,
        # outside it, and the form validated inside gets their result (see `get_form`).
        if request.method == "POST" and object_id is None and self.has_add_permission(request):
            form = self.get_form(request, None, change=False)
            check = getattr(form, "check_via_service", ServiceForm.check_via_service)
            if check is not ServiceForm.check_via_service:
                first = form(request.POST, request.FILES)
                first.checking = True
                first.is_valid()
                request.__dict__["_service_form_check"] = (first.checked, first.refused)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        # The service already saved the object while the form was validated.
        return None

    def save_related(self, request, form, formsets, change) -> None:
        return None

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = projects_for_user(request.user)
        if self.project_path == "":
            return super().get_queryset(request).filter(pk__in=visible.values("pk"))
        return super().get_queryset(request).filter(**{f"{self.project_path}__in": visible})

    def has_module_permission(self, request: HttpRequest) -> bool:
        # Listed on the admin index (and the site's "Administration" link shown) only for those
        # with something here: rows of a project they may see, or rows they may add.
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (sees_any_project(request) or self.has_add_permission(request))
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Rows are already restricted by get_queryset; outsiders never reach an object.
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def run_action(self, request: HttpRequest, queryset: QuerySet, service, verb: str, **kw):
        """Apply `service` to each selected row, reporting successes and refusals."""
        done = 0
        for obj in queryset:
            try:
                service(actor=request.user, **{self.action_argument: obj}, **kw)
                done += 1
            except (ValidationError, PermissionDenied) as exc:
                text = refusal_message(exc)
                self.message_user(request, f"{obj}: {text}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} item(s).", messages.SUCCESS)

    action_argument = "obj"


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 60}))


def action_with_text(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    title: str,
    label: str,
    apply,
):
    """An admin action that first asks for a text (a reason, a version label), then applies
    `apply(text)`. Returns the intermediate page until the text is given."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    form.fields["reason"].label = label
    if form.is_bound and form.is_valid():
        apply(form.cleaned_data["reason"])
        return None
    return TemplateResponse(
        request,
        "admin/action_with_text.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "queryset": queryset,
            "action": request.POST.get("action"),
            "opts": modeladmin.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        },
    )


class UniqueInlineFormSet(forms.BaseInlineFormSet):
    """Refuses two rows with the same `unique_fields` values inside the parent, next to the
    form, before any service runs (the parent key is excluded from the model's own check)."""

    unique_fields: tuple[str, ...] = ()

    def clean(self) -> None:
        super().clean()
        seen: dict[tuple, int] = {}
        for index, form in enumerate(self.forms):
            if not getattr(form, "cleaned_data", None) or form in self.deleted_forms:
                continue
            key = tuple(form.cleaned_data.get(field) for field in self.unique_fields)
            if key in seen:
                form.add_error(
                    None,
                    f"Row {index + 1} repeats row {seen[key] + 1} ({', '.join(map(str, key))}).",
                )
            else:
                seen[key] = index


class DraftRowsInline:
    """Rows of a versioned rule set (template items, sign-off requirements): editable only
    while the version is a draft that no project uses, by those who may change rule sets."""

    change_permission = ""  # "app.codename"

    def in_use(self, obj: Model) -> bool:
        raise NotImplementedError

    def _editable(self, request: HttpRequest, obj: Model | None) -> bool:
        return (
            obj is not None
            and not self.in_use(obj)
            and request.user.has_perm(self.change_permission)
        )

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._editable(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._editable(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._editable(request, obj)


class VersionedRulesAdmin(admin.ModelAdmin):
    """A versioned rule set (checklist template, sign-off policy): its own fields are frozen,
    its rows change through services while it is a draft, a new version starts as a copy of an
    existing one, and one version is active for new projects. Subclasses name the services."""

    change_permission = ""  # "app.codename"
    create_permission = ""  # "app.codename" the service requires to start a new version
    actions = ["new_version", "activate"]

    def create_version(self, actor: User, source: Model, version: str) -> Model:
        raise NotImplementedError

    def activate_version(self, actor: User, obj: Model) -> None:
        raise NotImplementedError

    def save_row(self, actor: User, row: Model, parent: Model) -> None:
        raise NotImplementedError

    def delete_row(self, actor: User, row: Model) -> None:
        raise NotImplementedError

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_active and request.user.has_perm(self.change_permission)

    def has_new_version_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.has_perm(self.create_permission)

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)

    def save_model(self, request, obj, form, change) -> None:
        return None  # the version's own fields are read-only; only its rows change

    def save_formset(self, request, form, formset, change) -> None:
        changed = formset.save(commit=False)  # builds the objects, writes nothing
        for deleted in formset.deleted_objects:
            self.delete_row(request.user, deleted)
        for row in changed:
            self.save_row(request.user, row, form.instance)

    def _selected_one(self, request: HttpRequest, queryset: QuerySet) -> Model | None:
        if queryset.count() != 1:
            self.message_user(
                request, f"Select exactly one {self.opts.verbose_name}.", level=messages.ERROR
            )
            return None
        return queryset.get()

    @admin.action(
        description="Create a new version from the selected %(verbose_name)s",
        permissions=["new_version"],
    )
    def new_version(self, request: HttpRequest, queryset: QuerySet):
        source = self._selected_one(request, queryset)
        if source is None:
            return None

        def apply(version: str) -> None:
            try:
                draft = self.create_version(request.user, source, version)
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, refusal_message(exc), level=messages.ERROR)
                return
            self.message_user(request, f"Created draft {draft}; edit it, then activate it.")

        return action_with_text(
            self,
            request,
            queryset,
            title=f"New {self.opts.verbose_name} version",
            label="Version",
            apply=apply,
        )

    @admin.action(
        description="Activate the selected %(verbose_name)s for new projects",
        permissions=["activate"],
    )
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        obj = self._selected_one(request, queryset)
        if obj is None:
            return
        try:
            self.activate_version(request.user, obj)
        except (ValidationError, PermissionDenied) as exc:
            self.message_user(request, refusal_message(exc), level=messages.ERROR)
            return
        self.message_user(request, f"Activated {obj} for new projects.")
