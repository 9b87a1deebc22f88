from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    verbose_name = "Lifecycle"

    def ready(self) -> None:
        # Register the evaluation jobs in every process: services enqueue them by name, and the
        # embedded default runs them in-process.
        from lifecycle.evaluations import tasks  # noqa: F401
        from lifecycle.monitoring import tasks as monitoring_tasks  # noqa: F401
