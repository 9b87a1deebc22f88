import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audits import checkpoints
from audits.verification import verify
from audits.verify_export import run


class Command(BaseCommand):
    help = (
        "Recompute every audit chain (or one project's, or an exported file's) and compare it "
        "with the chain heads and every signed checkpoint; check the append-only triggers. "
        "Exits 1 naming the first bad event."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", metavar="SLUG", help="verify one project's chain")
        parser.add_argument(
            "--file",
            metavar="EXPORT",
            type=Path,
            help="verify an export file offline, without the database (the same check as "
            "`python -m audits.verify_export`, with the configured checkpoint keys)",
        )
        parser.add_argument(
            "--checkpoints",
            metavar="FILE",
            type=Path,
            action="append",
            default=[],
            help="with --file: also compare the export with this checkpoint file",
        )
        parser.add_argument(
            "--no-checkpoints",
            action="store_true",
            help="do not compare with the checkpoints in AUDIT_CHECKPOINT_DIR",
        )

    def handle(
        self, *args, project=None, file=None, checkpoints=(), no_checkpoints=False, **options
    ) -> None:
        if file is not None:
            self._verify_file(file, checkpoints)
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
            f"{report.checkpointed} chain(s) matched their checkpoints."
        )

    def _verify_file(self, path: Path, checkpoint_files: list[Path]) -> None:
        status = run(
            path,
            verifier=checkpoints.verifier(),
            checkpoint_files=checkpoint_files,
            stdout=self.stdout,
            stderr=self.stderr,
        )
        if status == 2:
            raise CommandError(f"Cannot verify {path}.")
        if status:
            sys.exit(status)
