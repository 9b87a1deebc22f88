from django.contrib.admin import apps as admin_apps


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin on our site class (audited own-password change)."""

    default = False
    default_site = "config.admin_site.GovernanceAdminSite"
