import csv
import io
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from demo.records import binary_classifier


class Command(BaseCommand):
    help = (
        "Write a synthetic evaluation records file (the ED triage classifier's shape, no patient "
        "data) to try `evaluate` and uploads: JSON Lines, or CSV when FILE ends in .csv."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="where to write, e.g. records.jsonl or records.csv")
        parser.add_argument("--records", type=int, default=1200, help="how many (default 1200)")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, **options) -> None:
        if not 1 <= options["records"] <= 1_000_000:
            raise CommandError("--records must be between 1 and 1,000,000.")
        path = Path(options["file"])
        data = binary_classifier(
            seed=options["seed"], n=options["records"], prevalence=0.3, separation=1.4
        )
        if path.suffix.lower() == ".csv":
            data = _as_csv(data)
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        self.stdout.write(f"Wrote {options['records']} records to {path}.")


def _as_csv(jsonl: bytes) -> bytes:
    """The same records in the CSV shape of docs/metrics.md: one `group.<attr>` column each."""
    records = [json.loads(line) for line in jsonl.splitlines()]
    attrs = sorted({attr for r in records for attr in r["groups"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = [f for f in records[0] if f != "groups"]
    writer.writerow(fields + [f"group.{a}" for a in attrs])
    for r in records:
        writer.writerow([_cell(r[f]) for f in fields] + [r["groups"].get(a, "") for a in attrs])
    return out.getvalue().encode()


def _cell(value: object) -> object:
    return str(value).lower() if isinstance(value, bool) else value
