"""`manage.py evaluate FILE`: check a file of evaluation records before uploading it.

A thin adapter over lifecycle.metrics.evaluate: the result JSON (or a text table) on stdout,
warnings on stderr, exit status 2 with the line-precise message for a refused file.
"""

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lifecycle.metrics import (
    DEFAULT_RESAMPLES,
    TASK_PRESETS,
    Limits,
    RecordError,
    evaluate,
    format_text,
)

REFUSED = 2


def _metric_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


class Command(BaseCommand):
    help = (
        "Compute evaluation metrics for a file of records (JSON Lines or CSV): the task's "
        "preset suite or --metrics, with bootstrap intervals, subgroups and fairness."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="records file: .jsonl, .ndjson, .json or .csv")
        parser.add_argument("--task", choices=sorted(TASK_PRESETS), help="task category preset")
        parser.add_argument(
            "--metrics", type=_metric_list, help="comma-separated metric keys (overrides --task)"
        )
        parser.add_argument("--format", choices=["json", "text"], default="json")
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
        parser.add_argument(
            "--resamples",
            type=int,
            default=DEFAULT_RESAMPLES,
            help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})",
        )
        parser.add_argument(
            "--rows",
            type=int,
            help="the row_count of the dataset version the records stand for: refuse a file "
            "that does not cover it, as an upload would",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not options["task"] and not options["metrics"]:
            raise CommandError("give --task or --metrics", returncode=REFUSED)
        try:
            with path.open("rb") as stream:
                result = evaluate(
                    stream,
                    filename=path.name,
                    task=options["task"],
                    metrics=options["metrics"],
                    seed=options["seed"],
                    resamples=options["resamples"],
                    limits=Limits.from_settings(settings),
                )
        except OSError as error:
            raise CommandError(
                f"cannot read {path}: {error.strerror}", returncode=REFUSED
            ) from None
        except RecordError as error:
            raise CommandError(f"{path.name}: refused: {error}", returncode=REFUSED) from None
        except ValueError as error:
            raise CommandError(str(error), returncode=REFUSED) from None
        rows = options["rows"]
        if rows is not None and result["n_records"] != rows:
            raise CommandError(
                f"{path.name}: refused: the file has {result['n_records']:,} records but the "
                f"dataset version has {rows:,} rows; an upload naming it would be refused "
                "unless declared a subset with a reason",
                returncode=REFUSED,
            )
        for warning in result["warnings"]:
            self.stderr.write(f"warning: {warning}")
        if options["format"] == "text":
            self.stdout.write(format_text(result))
        else:
            self.stdout.write(json.dumps(result, indent=2))
