"""Admin for users, memberships, authenticator devices and API tokens; every write goes
through the services. Projects, gates and policies are in `lifecycle.admin`."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from governance import services
from governance.admin_base import (
    ServiceForm,
    ServiceModelAdmin,
    holds_anywhere,
    projects_where,
)
from governance.models import ApiToken, Membership, User
from governance.permissions import has_project_perm
from governance.selectors import projects_for_user

admin.site.disable_action("delete_selected")

admin.site.unregister(Group)  # roles are per project (Membership), never global groups
admin.site.unregister(TOTPDevice)
# Recovery codes are made and shown once on the account page (governance.totp), never read or
# added in the admin.
admin.site.unregister(StaticDevice)


@admin.register(TOTPDevice)
class AuditedTOTPDeviceAdmin(TOTPDeviceAdmin):
    """django-otp's device admin (with its QR code), writing through the audited services."""

    def has_add_permission(self, request) -> bool:
        # otp_device_save asks for the change permission, for a new device too.
        return super().has_add_permission(request) and request.user.has_perm(
            "otp_totp.change_totpdevice"
        )

    def save_model(self, request, obj, form, change) -> None:
        services.otp_device_save(actor=request.user, device=obj)

    def delete_model(self, request, obj) -> None:
        services.otp_device_delete(actor=request.user, device=obj)

    def delete_queryset(self, request, queryset) -> None:
        for device in queryset:
            services.otp_device_delete(actor=request.user, device=device)


class UserCreateForm(ServiceForm):
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email"]

    def save_via_service(self) -> User:
        data = self.cleaned_data
        if data["password1"] != data["password2"]:
            raise ValidationError({"password2": "The two passwords differ."})
        return services.user_create(
            actor=self.actor,
            username=data["username"],
            password=data["password1"],
            first_name=data["first_name"],
            last_name=data["last_name"],
            email=data["email"],
        )


class UserChangeForm(ServiceForm):
    new_password1 = forms.CharField(
        label="New password",
        widget=forms.PasswordInput,
        strip=False,
        required=False,
        help_text="Leave empty to keep the current password.",
    )
    new_password2 = forms.CharField(
        label="New password again", widget=forms.PasswordInput, strip=False, required=False
    )

    class Meta:
        model = User
        fields = [*services.USER_FIELDS, "user_permissions"]

    def save_via_service(self) -> User:
        data = self.cleaned_data
        user = User.objects.get(pk=self.instance.pk)
        changes = {f: data[f] for f in services.USER_FIELDS if f in self.changed_data}
        permissions = data["user_permissions"] if "user_permissions" in self.changed_data else None
        if changes or permissions is not None:
            user = services.user_update(
                actor=self.actor, user=user, permissions=permissions, **changes
            )
        if data["new_password1"] or data["new_password2"]:
            if data["new_password1"] != data["new_password2"]:
                raise ValidationError({"new_password2": "The two passwords differ."})
            user = services.user_set_password(
                actor=self.actor, user=user, password=data["new_password1"]
            )
        return user


@admin.register(User)
class UserAccountAdmin(UserAdmin):
    """Accounts; every change goes through the user services and lands in the audit trail."""

    form = UserChangeForm
    add_form = UserCreateForm
    fieldsets = [
        (None, {"fields": ["username", "first_name", "last_name", "email"]}),
        ("Password", {"fields": ["new_password1", "new_password2"]}),
        ("Status", {"fields": ["is_active", "is_staff", "is_superuser"]}),
        ("Global permissions", {"fields": ["user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"fields": ["username", "first_name", "last_name", "email"]}),
        ("Password", {"fields": ["password1", "password2"]}),
    ]
    readonly_fields = ["username", "last_login", "date_joined"]
    filter_horizontal = ["user_permissions"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def save_model(self, request, obj, form, change) -> None:
        return None  # saved by the service during validation

    def save_related(self, request, form, formsets, change) -> None:
        return None

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # accounts are deactivated, never deleted: the trail refers to them

    def get_urls(self):
        # Passwords are changed in the account form, through the audited service.
        return [url for url in super().get_urls() if "password" not in str(url.pattern)]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "added_at", "added_by"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class MembershipForm(ServiceForm):
    class Meta:
        model = Membership
        fields = ["project", "user", "role"]

    def save_via_service(self) -> Membership:
        return services.membership_add(
            actor=self.actor,
            project=self.cleaned_data["project"],
            user=self.cleaned_data["user"],
            role=self.cleaned_data["role"],
        )


@admin.register(Membership)
class MembershipAdmin(ServiceModelAdmin):
    form = MembershipForm
    list_display = ["user", "role", "project", "added_at", "added_by"]
    list_filter = ["role", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "user__first_name", "user__last_name", "project__name"]
    list_select_related = ["user", "project", "added_by"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "project":
            kwargs["queryset"] = projects_where(request.user, "manage_members")
        if db_field.name == "user":
            kwargs["queryset"] = User.objects.filter(is_active=True).order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request) -> bool:
        return holds_anywhere(request, "manage_members")

    def has_change_permission(self, request, obj=None) -> bool:
        # A role is added or removed, never edited in place.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is None:
            return holds_anywhere(request, "manage_members")
        return has_project_perm(request.user, "manage_members", obj.project)

    def delete_model(self, request, obj) -> None:
        services.membership_remove(actor=request.user, membership=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.path)


class ApiTokenForm(ServiceForm):
    """Creates a token for the administrator themself; the secret is shown once."""

    class Meta:
        model = ApiToken
        fields = ["name", "expires_at", "read_only", "projects"]

    def save_via_service(self) -> ApiToken:
        token, self.secret = services.api_token_create(
            actor=self.actor,
            name=self.cleaned_data["name"],
            expires_at=self.cleaned_data["expires_at"],
            read_only=self.cleaned_data["read_only"],
            projects=self.cleaned_data["projects"],
        )
        return token


@admin.register(ApiToken)
class ApiTokenAdmin(ServiceModelAdmin):
    form = ApiTokenForm
    list_display = [
        "name",
        "user",
        "prefix",
        "read_only",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["read_only"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_queryset(self, request):
        tokens = ApiToken.objects.select_related("user")
        if request.user.has_perm("governance.view_apitoken"):
            return tokens
        return tokens.filter(user=request.user)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "projects":
            kwargs["queryset"] = projects_for_user(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_module_permission(self, request) -> bool:
        # Listed for those who administer tokens; everyone manages their own on the Account page.
        user = request.user
        return (
            user.is_active
            and user.is_staff
            and any(user.has_perm(f"governance.{verb}_apitoken") for verb in ("view", "change"))
        )

    def has_add_permission(self, request) -> bool:
        # api_token_create lets every active user create a token of their own.
        return request.user.is_active and request.user.is_staff

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_new_token_secret", None)
        if secret:
            self.message_user(
                request, f"Token created; copy it now, it is not shown again: {secret}"
            )
        return super().response_add(request, obj, post_url_continue)

    def save_model(self, request, obj, form, change) -> None:
        request._new_token_secret = getattr(form, "secret", None)  # shown once, never stored

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        self.run_action(request, queryset, services.api_token_revoke, "Revoked")

    action_argument = "token"
