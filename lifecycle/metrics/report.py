"""A readable text rendering of an evaluation result (the CLI's --format text)."""

from __future__ import annotations

from typing import Any


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"
    return str(value)


def _row(name: str, entry: dict[str, Any]) -> list[str]:
    if isinstance(entry.get("value"), list):
        return [name, "matrix (see below)", "", str(entry.get("n", ""))]
    if entry.get("value") is None:
        return [name, "null", entry.get("reason", ""), str(entry.get("n", ""))]
    interval = (
        f"[{_number(entry['ci_low'])}, {_number(entry['ci_high'])}]"
        if entry.get("ci_low") is not None
        else ""
    )
    return [name, _number(entry["value"]), interval, str(entry.get("n", ""))]


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()
    ]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def _matrix(name: str, entry: dict[str, Any]) -> list[str]:
    labels = [str(label) for label in entry.get("labels", [])]
    rows = [[labels[i], *(str(x) for x in row)] for i, row in enumerate(entry["value"])]
    return [f"{name} (rows: true, columns: predicted)", *_table(rows, ["", *labels])]


def _section(entries: dict[str, dict[str, Any]]) -> list[str]:
    out = _table([_row(k, e) for k, e in entries.items()], ["metric", "value", "95% CI", "n"])
    for key, entry in entries.items():
        if isinstance(entry.get("value"), list):
            out += ["", *_matrix(key, entry)]
    return out


def format_text(result: dict[str, Any]) -> str:
    """Tables of the overall metrics, each subgroup, fairness, then warnings and provenance."""
    header = ["metric", "value", "95% CI", "n"]
    out = [f"{result['n_records']} records", "", *_section(result["metrics"])]
    for attribute, groups in result["groups"].items():
        for group, entries in groups.items():
            out += ["", f"{attribute} = {group}", *_section(entries)]
    if result["fairness"]:
        out += ["", "fairness (difference between groups)"]
        rows = [
            _row(f"{key} ({attribute})", entry)
            for attribute, entries in result["fairness"].items()
            for key, entry in entries.items()
        ]
        out += _table(rows, header)
    if result["warnings"]:
        out += ["", "warnings"] + [f"- {w}" for w in result["warnings"]]
    provenance = result["provenance"]
    out += [
        "",
        f"engine {provenance['engine_version']}, seed {provenance['seed']}, "
        f"{provenance['resamples']} resamples ({provenance['ci_method']}), "
        f"input sha256 {provenance['input_sha256']}",
    ]
    return "\n".join(out)
