from django.apps import AppConfig


class AuditsConfig(AppConfig):
    name = "audits"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # Registers the checkpoint and report key checks and connects the login/logout receivers.
        from audits import checks, signals  # noqa: F401
        from audits.reports import checks as report_checks  # noqa: F401

        # Register the report job in every process: services enqueue it by name, and the
        # embedded default runs it in-process.
        from audits.reports import tasks  # noqa: F401
