from django.core.management.base import BaseCommand
from django.test.utils import override_settings

from demo.health_system import DEMO_PASSWORD, load_demo


class Command(BaseCommand):
    help = "Load the demo health system (idempotent): one user per role and five projects."

    def handle(self, *args, **options) -> None:
        # The demo's made-up history is nobody's news: its notifications go nowhere instead of
        # flooding the console (or a configured SMTP relay) with a hundred messages.
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"):
            created = load_demo()
        if created:
            self.stdout.write(f"Demo data: created {len(created)} objects.")
        else:
            self.stdout.write("Demo data already loaded.")
        self.stdout.write(
            f"Log in as admin, lead, clinician, steward, privacy, safety, compliance, chair, "
            f"member, auditor or outsider with the password “{DEMO_PASSWORD}”."
        )
