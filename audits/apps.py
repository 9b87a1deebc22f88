from django.apps import AppConfig


class AuditsConfig(AppConfig):
    name = "audits"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from audits import signals  # noqa: F401 - connects the login/logout receivers
