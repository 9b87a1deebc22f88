"""Parsing and whole-file validation: every refusal names the line and the field."""

import hashlib
import io

import pytest

from lifecycle.metrics import Limits, RecordError, evaluate, parse_records
from lifecycle.metrics import engine as engine_module

from .helpers import csv_bytes, jsonl


def parse(data: bytes, metrics=("f1",), filename="r.jsonl", limits=None, optional=()):
    return parse_records(
        io.BytesIO(data),
        filename=filename,
        metrics=list(metrics),
        limits=limits or Limits(),
        optional_metrics=list(optional),
    )


def refusal(data: bytes, **options) -> RecordError:
    with pytest.raises(RecordError) as caught:
        parse(data, **options)
    return caught.value


GOOD = {"id": "r-1", "label": 1, "prediction": 0, "score": 0.4}


def lines(*texts: str) -> bytes:
    return "".join(text + "\n" for text in texts).encode()


def test_it_names_line_and_field_for_a_score_outside_0_1():
    error = refusal(
        jsonl(
            [GOOD] * 0
            + [dict(GOOD, id=f"r{i}") for i in range(16)]
            + [dict(GOOD, id="x", score=1.3)]
        ),
        metrics=["auroc"],
    )
    assert str(error) == 'line 17, field "score": 1.3 is outside 0..1'
    assert (error.line, error.field, error.message) == (17, "score", "1.3 is outside 0..1")


def test_it_refuses_bad_json_with_the_column():
    error = refusal(lines('{"label": 1, "prediction": 1}', "{}", "{}", '{"label": }'))
    assert str(error) == "line 4: not valid JSON (Expecting value at column 11)"
    assert error.field is None


def test_it_refuses_a_line_that_is_not_an_object():
    error = refusal(lines("[1, 2]"))
    assert str(error) == "line 1: expected one JSON object per line (JSON Lines), got a list"


def test_it_refuses_duplicate_ids_naming_the_first():
    records = [dict(GOOD, id=f"r-{i}") for i in range(8)] + [dict(GOOD, id="r-2")]
    error = refusal(jsonl(records))
    assert str(error) == 'line 9, field "id": duplicate id "r-2" (first seen on line 3)'


def test_it_refuses_a_missing_field_that_a_requested_metric_needs():
    error = refusal(jsonl([GOOD, {"id": "r-2", "prediction": 1}]), metrics=["f1"])
    assert str(error) == 'line 2, field "label": missing, but metric "f1" needs it'
    assert refusal(jsonl([GOOD]), metrics=["rouge1"]).message == (
        'missing, but metric "rouge1" needs it'
    )


def test_it_refuses_empty_files():
    assert str(refusal(b"")) == "the file is empty"
    assert str(refusal(b"\n  \n\n")) == "the file is empty"
    assert str(refusal(b"id,label\n", filename="r.csv")) == (
        "the file is empty (a header but no records)"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"score": NaN, "label": 1}',
            'line 1, field "score": NaN is not allowed (numbers must be finite)',
        ),
        (
            '{"score": Infinity, "label": 1}',
            'line 1, field "score": Infinity is not allowed (numbers must be finite)',
        ),
        (
            '{"score": "high", "label": 1}',
            'line 1, field "score": expected a number, got a string "high"',
        ),
        (
            '{"score": true, "label": 1}',
            'line 1, field "score": expected a number, got a boolean true',
        ),
        ('{"score": -0.1, "label": 1}', 'line 1, field "score": -0.1 is outside 0..1'),
        (
            '{"score": 0.5, "label": 0.5}',
            'line 1, field "label": expected 0/1, an integer class, a string class or code, '
            "or a list, got a number 0.5",
        ),
        (
            '{"score": 0.5, "label": {"a": 1}}',
            'line 1, field "label": expected 0/1, an integer class, a string class or code, '
            'or a list, got an object {"a": 1}',
        ),
    ],
)
def test_it_refuses_wrong_types_and_non_finite_numbers(line, expected):
    assert str(refusal(lines(line), metrics=["auroc"])) == expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"output": 5}, 'field "output": expected text, got a number 5'),
        (
            {"token_logprobs": [-1.0, 0.5]},
            'field "token_logprobs": 0.5 is positive; log-probabilities are at most 0',
        ),
        (
            {"token_logprobs": "x"},
            'field "token_logprobs": expected a list of log-probabilities, got a string',
        ),
        ({"latency_ms": -3}, 'field "latency_ms": -3.0 is negative'),
        ({"hallucinated": 2}, 'field "hallucinated": expected 0/1 or true/false, got 2'),
        ({"event": "yes"}, 'field "event": expected 0/1 or true/false, got "yes"'),
        ({"prompt_id": ""}, 'field "prompt_id": expected a non-empty string, got a string ""'),
        ({"id": 7}, 'field "id": expected a non-empty string, got a number 7'),
        ({"groups": ["F"]}, 'field "groups": expected an object of group attributes, got a list'),
        (
            {"groups": {"age": 41.5}},
            'field "groups.age": group values must be strings or integers, got 41.5',
        ),
        (
            {"label": [[0, "x", "DRUG"]]},
            'field "label": list items must be codes (strings or integers) or '
            '[start, end, type] spans, got [0, "x", "DRUG"]',
        ),
    ],
)
def test_it_checks_every_field_type(record, expected):
    error = refusal(jsonl([{"label": 1, "prediction": 1}, {"label": 1, "prediction": 1, **record}]))
    assert str(error) == f"line 2, {expected}"


def test_it_refuses_mixed_kinds_of_class():
    error = refusal(jsonl([{"label": 1, "prediction": 1}, {"label": "yes", "prediction": 1}]))
    assert str(error) == (
        'line 2, field "label": "yes" is a string class, but line 1 has an integer class; '
        "use one kind for label, prediction and perturbed_prediction"
    )


def test_it_refuses_classes_of_the_wrong_kind_for_a_requested_metric():
    error = refusal(jsonl([{"label": "high", "prediction": "low"}]), metrics=["triage_accuracy"])
    assert str(error) == (
        'line 1, field "label": metric "triage_accuracy" needs integer levels, got "high"'
    )
    error = refusal(jsonl([{"label": ["E11"], "prediction": ["E11"]}]), metrics=["entity_f1"])
    assert "needs lists of [start, end, type] spans" in str(error)
    error = refusal(jsonl([{"label": ["E11"], "prediction": ["E11"]}]), metrics=["f1"])
    assert (
        str(error)
        == 'line 1, field "label": metric "f1" needs single classes, not lists, got ["E11"]'
    )


def test_it_refuses_invalid_utf8_naming_the_line():
    error = refusal(b'{"label": 1, "prediction": 1}\n{"label": "\xff"}\n')
    assert str(error) == "line 2: not valid UTF-8 (byte 0xff at column 12)"


def test_it_enforces_the_size_and_row_limits():
    data = jsonl([dict(GOOD, id=f"r{i}") for i in range(10)])
    error = refusal(data, limits=Limits(max_bytes=100))
    assert str(error) == "the file is larger than the limit of 100 bytes"
    error = refusal(data, limits=Limits(max_rows=4))
    assert str(error) == "line 5: more than 4 records; the limit is 4"
    assert parse(data, limits=Limits(max_rows=10)).n == 10


def test_it_refuses_too_many_group_values():
    records = [dict(GOOD, id=f"r{i}", groups={"age": str(i)}) for i in range(6)]
    error = refusal(jsonl(records), limits=Limits(max_group_values=5))
    assert error.field == "groups.age"
    assert "6 distinct values" in str(error)


def test_it_detects_the_format_from_the_extension():
    data = jsonl([GOOD])
    for name in ("r.jsonl", "R.NDJSON", "r.json"):
        assert parse(data, filename=name).input_format == "jsonl"
    assert parse(csv_bytes([GOOD]), filename="r.csv").input_format == "csv"
    error = refusal(data, filename="records.txt")
    assert "cannot tell the format" in str(error) and ".csv" in str(error)


def test_csv_lines_count_the_header_as_line_1_and_follow_quoted_newlines():
    data = b'id,label,prediction,output\nr1,1,1,"two\nlines"\nr2,1,,x\n'
    error = refusal(data, filename="r.csv")
    assert str(error) == 'line 4, field "prediction": missing, but metric "f1" needs it'


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"id,score,label\nr1,0.5,1\nr2,1.5,1\n", 'line 3, field "score": 1.5 is outside 0..1'),
        (
            b"id,score,label\nr1,nan,1\n",
            'line 2, field "score": NaN is not allowed (numbers must be finite)',
        ),
        (b"id,score,label\nr1,high,1\n", 'line 2, field "score": expected a number, got "high"'),
        (b"id,label,label\nr1,1,1\n", 'line 1: the header names column "label" twice'),
        (b"id,label\nr1,1,1\n", "line 2: 3 values but the header has 2 columns"),
        (
            b'id,label,token_logprobs\nr1,1,"[-1,"\n',
            'line 2, field "token_logprobs": expected a JSON list of log-probabilities, got "[-1,"',
        ),
        (b"id,label\nr1,1\nr1,0\n", 'line 3, field "id": duplicate id "r1" (first seen on line 2)'),
    ],
)
def test_csv_refusals(data, expected):
    assert str(refusal(data, filename="r.csv", metrics=["auroc"])) == expected


def test_csv_and_jsonl_parse_to_the_same_columns():
    records = [
        {
            "id": "a",
            "label": 1,
            "prediction": 0,
            "score": 0.25,
            "output": "",
            "event": True,
            "token_logprobs": [-0.5, -1.0],
            "groups": {"sex": "F", "age": "65+"},
        },
        {
            "id": "b",
            "label": 0,
            "prediction": 0,
            "score": 1.0,
            "output": "Fine, thanks.",
            "event": False,
            "token_logprobs": [],
            "groups": {"sex": "M"},
        },
    ]
    rows = [
        {
            **{k: v for k, v in r.items() if k not in ("groups", "token_logprobs", "event")},
            "event": str(r["event"]).lower(),
            "token_logprobs": str(r["token_logprobs"]),
            **{f"group.{a}": g for a, g in r["groups"].items()},
        }
        for r in records
    ]
    from_jsonl = parse(jsonl(records))
    from_csv = parse(csv_bytes(rows), filename="r.csv")
    assert from_csv.columns == from_jsonl.columns
    assert from_csv.groups == from_jsonl.groups == {"age": ["65+", None], "sex": ["F", "M"]}
    assert from_csv.ids == ["a", "b"]


def test_it_streams_in_chunks_and_hashes_the_raw_bytes(monkeypatch):
    from lifecycle.metrics import records as records_module

    monkeypatch.setattr(records_module, "CHUNK_BYTES", 7)
    data = "\ufeff".encode() + jsonl([dict(GOOD, id=f"r{i}", output="é…") for i in range(20)])
    data = data.replace(b"\n", b"\r\n")
    reads = []

    class Stream(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    dataset = parse_records(Stream(data), filename="r.jsonl", metrics=["f1"])
    assert dataset.n == 20
    assert all(size == 7 for size in reads) and len(reads) > 20
    assert dataset.sha256 == hashlib.sha256(data).hexdigest()
    assert dataset.size_bytes == len(data)
    assert dataset.columns["output"][0] == "é…"


def test_it_keeps_unknown_fields_out_of_the_way():
    dataset = parse(jsonl([dict(GOOD, note="free text", extra={"x": 1})]))
    assert dataset.ignored_fields == ["extra", "note"]


def test_a_preset_skips_metrics_whose_fields_no_record_carries_but_refuses_partial_ones():
    data = jsonl([{"label": 1, "prediction": 1}, {"label": 0, "prediction": 1}])
    dataset = parse(data, metrics=[], optional=["f1", "auroc", "rouge1"])
    assert dataset.unavailable == {
        "auroc": 'no record carries "score"',
        "rouge1": 'no record carries "reference", "output"',
    }
    partial = jsonl([{"label": 1, "prediction": 1, "score": 0.2}, {"label": 0, "prediction": 1}])
    error = refusal(partial, metrics=[], optional=["auroc"])
    assert str(error) == 'line 2, field "score": missing, but metric "auroc" needs it'


def test_nothing_is_computed_from_a_refused_file(monkeypatch):
    calls = []
    monkeypatch.setitem(engine_module.BUILDERS, "f1", lambda *args: calls.append(args))
    data = jsonl(
        [GOOD] + [dict(GOOD, id=f"r{i}") for i in range(50)] + [dict(GOOD, id="z", score=2)]
    )
    with pytest.raises(RecordError):
        evaluate(io.BytesIO(data), filename="r.jsonl", metrics=["f1", "auroc"])
    assert calls == []
