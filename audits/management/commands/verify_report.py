from pathlib import Path

from django.core.management.base import BaseCommand

from audits.reports.verify import run


class Command(BaseCommand):
    help = (
        "Verify a sealed compliance report: its seal, embedded content and bytes, offline (no "
        "database, no configuration). Prints the signing key's fingerprint and what the report "
        "covers; exits 1 naming the first problem. --live also checks it against this "
        "installation's audit trail."
    )
    requires_system_checks: list[str] = []  # runs on a machine with no configuration at all

    def add_arguments(self, parser) -> None:
        parser.add_argument("report", type=Path, metavar="FILE", help="the report file")
        parser.add_argument(
            "--key",
            metavar="PUBLIC_KEY",
            help="require this public report key (base64, PEM or a file; see /reports/key/)",
        )
        parser.add_argument(
            "--live",
            action="store_true",
            help="also check, in this installation's database, that the report's audit chain "
            "head is still in the live trail and its content still matches",
        )

    def handle(self, *args, report: Path, key=None, live=False, **options) -> None:
        outcome = run(report, key)
        for line in outcome.out:
            self.stdout.write(line)
        for line in outcome.err:
            self.stderr.write(line)
        if outcome.status:
            raise SystemExit(outcome.status)
        if not live:
            return
        # Imported here: the offline check above must work without a configured database.
        from audits.reports.live import live_problems

        assert outcome.seal is not None
        problems = live_problems(outcome.seal, outcome.data)
        if problems:
            self.stderr.write(f"NOT VERIFIED against the live trail: {problems[0]}")
            raise SystemExit(1)
        self.stdout.write(
            "  Live:       the chain head is in the live audit trail and the report matches "
            "the one this installation generated"
        )
