"""`manage.py drift BASELINE CURRENT`: check a monitoring batch against its baseline before
sending it.

A thin adapter over lifecycle.metrics.drift: the drift JSON (PRODUCT.md, "Monitoring") or a text
table on stdout, notes on stderr, exit status 2 with the line-precise message naming the
refused file (baseline or current). No database is needed.
"""

import json
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lifecycle.metrics import Limits
from lifecycle.metrics.drift import DriftFileError, drift, drift_notes, format_text, parse_pair

REFUSED = 2


class Command(BaseCommand):
    help = (
        "Drift of a records file against a baseline file (JSON Lines or CSV): PSI, KS and "
        "Wasserstein for every numeric field both carry, PSI and chi-square for every group "
        "attribute."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("baseline", help="the baseline records: .jsonl, .ndjson, .json or .csv")
        parser.add_argument("current", help="the records to compare with it (e.g. a batch)")
        parser.add_argument("--format", choices=["json", "text"], default="json")

    def handle(self, *args: Any, **options: Any) -> None:
        baseline_path, current_path = Path(options["baseline"]), Path(options["current"])
        try:
            with (
                _open(baseline_path, "baseline") as baseline,
                _open(current_path, "current") as current,
            ):
                datasets = parse_pair(
                    baseline,
                    baseline_path.name,
                    current,
                    current_path.name,
                    Limits.from_settings(settings),
                )
        except DriftFileError as error:
            raise CommandError(str(error), returncode=REFUSED) from None
        result = drift(*datasets)
        for note in drift_notes(*datasets):
            self.stderr.write(f"note: {note}")
        if options["format"] == "text":
            self.stdout.write(format_text(result))
        else:
            self.stdout.write(json.dumps(result, indent=2, allow_nan=False))


def _open(path: Path, role: str) -> BinaryIO:
    """The file opened for reading, or the command's refusal naming which file it was."""
    try:
        return path.open("rb")
    except OSError as error:
        raise CommandError(
            f"cannot read the {role} file {path}: {error.strerror}", returncode=REFUSED
        ) from None
