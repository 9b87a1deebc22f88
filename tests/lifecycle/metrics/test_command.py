"""`manage.py evaluate`: JSON on stdout, warnings on stderr, exit status 2 for a refused file.
No database is needed."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from .helpers import jsonl


@pytest.fixture
def records_file(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(
        jsonl(
            {
                "id": f"r{i}",
                "label": i % 2,
                "prediction": (i // 3) % 2,
                "score": (i % 10) / 10,
                "groups": {"sex": "FM"[i % 2]},
            }
            for i in range(80)
        )
    )
    return path


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_prints_only_json_on_stdout_and_warnings_on_stderr(records_file):
    out, err = run(
        records_file, "--task", "clinical_text_classification", "--resamples", "50", "--seed", "3"
    )
    result = json.loads(out)
    assert result["n_records"] == 80
    assert result["provenance"]["seed"] == 3 and result["provenance"]["resamples"] == 50
    assert result["metrics"]["auroc"]["value"] is not None
    # the preset's attack_success_rate has no perturbed_prediction to work with
    assert "warning: attack_success_rate: not computed" in err
    assert "warning: " not in out


def test_metrics_override_and_text_format(records_file):
    out, _ = run(records_file, "--metrics", "accuracy, f1", "--format", "text", "--resamples", "20")
    assert out.startswith("80 records")
    assert "accuracy" in out and "f1" in out and "95% CI" in out
    assert "sex = F" in out


def test_a_refused_file_exits_2_with_the_line_precise_message(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        jsonl(
            [
                {"label": 1, "prediction": 1, "score": 0.3},
                {"label": 0, "prediction": 1, "score": 1.3},
            ]
        )
    )
    with pytest.raises(CommandError) as caught:
        run(path, "--metrics", "auroc")
    assert caught.value.returncode == 2
    assert str(caught.value) == 'bad.jsonl: refused: line 2, field "score": 1.3 is outside 0..1'


def test_it_reads_limits_from_settings(records_file, settings):
    settings.EVALUATION_MAX_ROWS = 10
    with pytest.raises(CommandError, match="line 11: more than 10 records; the limit is 10"):
        run(records_file, "--metrics", "f1")
    settings.EVALUATION_MIN_GROUP_SIZE = 100
    del settings.EVALUATION_MAX_ROWS
    _, err = run(records_file, "--metrics", "f1", "--resamples", "10")
    assert "fewer than the minimum of 100" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "f2"], "unknown metric 'f2'"),
        ([], "give --task or --metrics"),
    ],
)
def test_bad_arguments_exit_2(records_file, args, message):
    with pytest.raises(CommandError, match=message) as caught:
        run(records_file, *args)
    assert caught.value.returncode == 2


def test_a_missing_file_exits_2(tmp_path):
    with pytest.raises(CommandError, match="cannot read") as caught:
        run(tmp_path / "nope.jsonl", "--metrics", "f1")
    assert caught.value.returncode == 2
