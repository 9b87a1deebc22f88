from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"


class GovernanceAdminConfig(admin_apps.AdminConfig):
    """Django's admin on our site class (audited own-password change)."""

    default = False
    default_site = "governance.admin_site.GovernanceAdminSite"
