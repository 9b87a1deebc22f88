import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audits.chain import verify_export
from audits.verification import verify


class Command(BaseCommand):
    help = (
        "Recompute every audit chain (or one project's, or an exported file's) and compare it "
        "with the chain heads and the signed checkpoints. Exits 1 naming the first bad event."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", metavar="SLUG", help="verify one project's chain")
        parser.add_argument(
            "--file",
            metavar="EXPORT",
            type=Path,
            help="verify an export file offline, without the database",
        )
        parser.add_argument(
            "--no-checkpoints",
            action="store_true",
            help="do not compare with the checkpoints in AUDIT_CHECKPOINT_DIR",
        )

    def handle(self, *args, project=None, file=None, no_checkpoints=False, **options) -> None:
        if file is not None:
            self._verify_file(file)
            return
        report = verify(project_slug=project, use_checkpoints=not no_checkpoints)
        if project is not None and report.chains == 0 and not report.problems:
            raise CommandError(f"No audit chain for project “{project}”.")
        for problem in report.problems:
            self.stderr.write(f"TAMPERING DETECTED: {problem}")
        if not report.ok:
            sys.exit(1)
        self.stdout.write(
            f"OK: {report.chains} chain(s), {report.events} event(s) verified; "
            f"{report.checkpointed} chain(s) matched their last checkpoint."
        )

    def _verify_file(self, path: Path) -> None:
        try:
            with path.open(encoding="utf-8") as handle:
                header, result = verify_export(handle)
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            self.stderr.write(f"TAMPERING DETECTED: {path}: {exc}")
            sys.exit(1)
        if result.problem:
            self.stderr.write(f"TAMPERING DETECTED: {path}: {result.problem}")
            sys.exit(1)
        self.stdout.write(
            f"OK: {path}: chain {header['chain']}, {result.length} event(s), head {result.head}"
        )
