from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo health system (`manage.py load_demo`): data, not domain."""

    name = "demo"
    verbose_name = "Demo data"
