"""`manage.py drift BASELINE CURRENT`: the drift JSON or a text table on stdout, notes on
stderr, exit status 2 naming the refused file; and the example of docs/monitoring.md, run as
printed. No database is needed."""

import io
import json
import re
import shlex
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.lifecycle.metrics.helpers import csv_bytes, jsonl

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("drift", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refusal(*args) -> CommandError:
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert caught.value.returncode == 2
    return caught.value


def records(n, *, shift=0.0):
    return [
        {
            "id": f"r{i}",
            "score": min(1.0, (i % 10) / 10 + shift),
            "latency_ms": 100 + 10 * (i % 5),
            "groups": {"sex": "FM"[i % 2]},
        }
        for i in range(n)
    ]


@pytest.fixture
def baseline(tmp_path):
    path = tmp_path / "baseline.jsonl"
    path.write_bytes(jsonl(records(60)))
    return path


@pytest.fixture
def batch(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(jsonl(records(40, shift=0.3)))
    return path


def test_it_prints_the_drift_json_of_product_md(baseline, batch):
    out, err = run(baseline, batch)
    result = json.loads(out)
    assert result["n_baseline"] == 60 and result["n_current"] == 40
    assert list(result["fields"]) == ["score", "latency_ms"]
    assert set(result["fields"]["score"]) == {"psi", "ks_statistic", "ks_pvalue", "wasserstein"}
    assert result["fields"]["score"]["psi"]["value"] > 0.25  # shifted by 0.3
    assert result["fields"]["latency_ms"]["psi"] == {"value": 0.0}  # unchanged
    assert set(result["groups"]["sex"]) == {"psi", "chi2_pvalue"}
    assert err == ""


def test_the_text_format_is_a_table_worst_first(baseline, batch):
    out, _ = run(baseline, batch, "--format", "text")
    assert out.splitlines()[:10] == [
        "baseline file: 60 records; current file: 40 records",
        "",
        "numeric field  PSI    KS statistic  KS p-value  Wasserstein",
        "-------------  -----  ------------  ----------  -----------",
        "score          2.486  0.3           0.02255     0.27",
        "latency_ms     0      0             1           0",
        "",
        "group attribute  PSI  chi-square p-value",
        "---------------  ---  ------------------",
        "sex              0    1",
    ]


def test_csv_and_jsonl_give_the_same_drift(tmp_path, baseline, batch):
    as_csv = tmp_path / "batch.csv"
    as_csv.write_bytes(
        csv_bytes(
            [
                {**{k: v for k, v in r.items() if k != "groups"}, "group.sex": r["groups"]["sex"]}
                for r in records(40, shift=0.3)
            ]
        )
    )
    assert run(baseline, as_csv) == run(baseline, batch)


def test_fields_only_one_file_carries_are_noted_on_stderr(tmp_path, baseline):
    current = tmp_path / "current.jsonl"
    current.write_bytes(jsonl([{"score": 0.5, "trust": 4, "groups": {"site": "north"}}] * 5))
    out, err = run(baseline, current)
    assert list(json.loads(out)["fields"]) == ["score"]
    assert err.splitlines() == [
        "note: latency_ms: only the baseline file carries it; not compared",
        "note: trust: only the current file carries it; not compared",
        "note: group sex: only the baseline file carries it",
        "note: group site: only the current file carries it",
    ]


def test_a_refused_baseline_is_named(tmp_path, batch):
    bad = tmp_path / "approved.jsonl"
    bad.write_bytes(jsonl([{"score": 0.2}, {"score": 0.3}, {"score": "high"}]))
    error = refusal(bad, batch)
    assert str(error) == (
        'baseline file approved.jsonl refused: line 3, field "score": expected a number, '
        'got a string "high"'
    )


def test_a_refused_current_file_is_named(tmp_path, baseline):
    bad = tmp_path / "week-9.csv"
    bad.write_bytes(b"score,latency_ms\n0.4,120\n0.5,-3\n")
    error = refusal(baseline, bad)
    assert str(error) == (
        'current file week-9.csv refused: line 3, field "latency_ms": -3.0 is negative'
    )


def test_a_missing_or_unreadable_file_is_named(tmp_path, baseline):
    error = refusal(tmp_path / "nope.jsonl", baseline)
    assert str(error) == f"cannot read the baseline file {tmp_path / 'nope.jsonl'}: " + (
        "No such file or directory"
    )
    assert "cannot read the current file" in str(refusal(baseline, tmp_path))


def test_a_file_of_unknown_format_is_refused(tmp_path, baseline):
    notes = tmp_path / "batch.txt"
    notes.write_bytes(b"score\n0.5\n")
    assert str(refusal(baseline, notes)).startswith(
        'current file batch.txt refused: cannot tell the format of "batch.txt"'
    )


def test_it_reads_limits_from_settings(settings, baseline, batch):
    settings.EVALUATION_MAX_ROWS = 50
    assert str(refusal(baseline, batch)) == (
        "baseline file baseline.jsonl refused: line 51: more than 50 records; the limit is 50"
    )


def test_format_must_be_json_or_text(baseline, batch):
    with pytest.raises(CommandError, match="invalid choice: 'xml'"):
        run(baseline, batch, "--format", "xml")


# --- docs/monitoring.md, run as printed ----------------------------------------------------------


def drift_section() -> str:
    text = DOCS.read_text()
    start = text.index("## Drift")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def test_the_docs_example_prints_what_the_docs_show(tmp_path, monkeypatch):
    section = drift_section()
    (commands,) = [block for block in blocks(section, "sh") if "manage.py drift" in block]
    monkeypatch.chdir(tmp_path)
    printed: dict[str, str] = {}
    for line in commands.strip().splitlines():
        words = shlex.split(line)
        assert words[:2] == [".venv/bin/python", "manage.py"], line
        out = io.StringIO()
        call_command(*words[2:], stdout=out, stderr=io.StringIO())
        if words[2] == "drift":
            fmt = words[words.index("--format") + 1] if "--format" in words else "json"
            printed[fmt] = out.getvalue()

    (text,) = blocks(section, "text")
    assert printed["text"] == text
    (shown,) = blocks(section, "json")
    assert _same(json.loads(printed["json"]), json.loads(shown))


def _same(actual, expected) -> bool:
    """Equal keys everywhere and numbers equal to 12 significant digits (the docs show them in
    full; the last bits of a p-value may differ between scipy builds)."""
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        return all(_same(actual[key], expected[key]) for key in expected)
    if isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-12)
        return True
    assert actual == expected
    return True
