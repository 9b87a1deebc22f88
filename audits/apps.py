from django.apps import AppConfig


class AuditsConfig(AppConfig):
    name = "audits"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # Registers the checkpoint key checks and connects the login/logout receivers.
        from audits import checks, signals  # noqa: F401
