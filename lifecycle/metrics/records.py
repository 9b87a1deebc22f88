"""Evaluation records: streaming parse and whole-file validation (PRODUCT.md, "The record
contract").

A file is JSON Lines or CSV (UTF-8). It is read in chunks, hashed while it is read, and every
record is validated before anything is computed; the first problem refuses the whole file with
a `RecordError` that names the line and the field. That includes hostile input: nesting deeper
than `MAX_DEPTH`, numbers longer than `MAX_NUMBER_DIGITS` digits, and text a database cannot
hold (a NUL character or an unpaired surrogate), in keys as in values.

Memory stays bounded at a million records: records are not kept as parsed objects. Each field
goes into a column as it is read, numbers into float64 arrays, flags and integer classes into
int64 arrays, group values into small integer codes (`Column` and its kinds read like lists of
values with None for a record that lacks one); only text, string classes and lists stay Python
objects.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, overload

import numpy as np

from .registry import METRICS, class_requirement, required_fields

CHUNK_BYTES = 1 << 20

# Field name -> kind. Unknown fields are accepted and ignored.
FIELD_KINDS: dict[str, str] = {
    "id": "id",
    "label": "class",
    "prediction": "class",
    "perturbed_prediction": "class",
    "score": "probability",
    "reference": "text",
    "output": "text",
    "input": "text",
    "token_logprobs": "logprobs",
    "prompt_id": "key",
    "time": "nonnegative",
    "event": "flag",
    "risk": "number",
    "latency_ms": "nonnegative",
    "completed": "flag",
    "hallucinated": "flag",
    "empathy": "number",
    "trust": "number",
}
CLASS_FIELDS = ("label", "prediction", "perturbed_prediction")
_INTEGER = re.compile(r"[+-]?\d+")

# A record is an object whose deepest contract field is a list of [start, end, type] spans
# (3 levels). The JSON decoder recurses once per level, and the interpreter's recursion limit
# is shared with the caller's stack, so a hostile file must be refused well before it.
MAX_DEPTH = 64
# Python refuses to convert integers of more than 4,300 digits, converting long ones costs time
# that grows with the square of the length, and past 308 digits they do not fit a float; no
# measurement needs more than a few dozen.
MAX_NUMBER_DIGITS = 100
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|-?[0-9][0-9.eE+-]*')
_SURROGATE = re.compile("[\ud800-\udfff]")
_FLAGS = {"1": 1, "0": 0, "true": 1, "false": 0}


@dataclass(frozen=True)
class Limits:
    """Limits on an uploaded file and the subgroup sizes below which results carry a warning."""

    max_bytes: int = 256 * 1024 * 1024
    max_rows: int = 1_000_000
    min_group_size: int = 30
    min_group_positives: int = 10
    min_group_negatives: int = 10
    max_group_values: int = 50

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """Limits from an object with optional `EVALUATION_*` attributes (e.g. Django's
        settings), each falling back to the default above."""
        defaults = cls()
        return cls(
            max_bytes=int(getattr(settings, "EVALUATION_MAX_BYTES", defaults.max_bytes)),
            max_rows=int(getattr(settings, "EVALUATION_MAX_ROWS", defaults.max_rows)),
            min_group_size=int(
                getattr(settings, "EVALUATION_MIN_GROUP_SIZE", defaults.min_group_size)
            ),
            min_group_positives=int(
                getattr(settings, "EVALUATION_MIN_GROUP_POSITIVES", defaults.min_group_positives)
            ),
            min_group_negatives=int(
                getattr(settings, "EVALUATION_MIN_GROUP_NEGATIVES", defaults.min_group_negatives)
            ),
            max_group_values=int(
                getattr(settings, "EVALUATION_MAX_GROUP_VALUES", defaults.max_group_values)
            ),
        )


class RecordError(ValueError):
    """A refused file. `line` (1-based; a CSV header is line 1) and `field` locate the problem
    when there is one; `message` is the problem itself; `str(error)` is the whole sentence,
    e.g. 'line 17, field "score": 1.3 is outside 0..1'."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None):
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.sentence())

    def sentence(self) -> str:
        if self.line is not None and self.field is not None:
            return f'line {self.line}, field "{self.field}": {self.message}'
        if self.line is not None:
            return f"line {self.line}: {self.message}"
        if self.field is not None:
            return f'field "{self.field}": {self.message}'
        return self.message

    def __str__(self) -> str:
        return self.sentence()


# Values converted to Python objects at a time when a typed column is iterated: bounded memory,
# and no per-value Python code in the loop.
_ITERATE_BLOCK = 1 << 16


class Column(Sequence[Any]):
    """A typed column of a parsed file: one value per record, None where a record lacks it.

    It reads like the list of those values (indexing, iteration, `None in column`, equality
    with a list), and gives numpy arrays directly to the code that wants them (`floats`).
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def floats(self) -> np.ndarray:
        """The values as float64, NaN where a record has none (a new array)."""
        raise NotImplementedError

    def _missing(self) -> np.ndarray:
        raise NotImplementedError

    def _blocks(self) -> Iterator[list[Any]]:
        raise NotImplementedError

    def _value(self, index: int) -> Any:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._value(i) for i in range(*index.indices(len(self)))]
        index = int(index)  # numpy integers too
        if not -len(self) <= index < len(self):
            raise IndexError("column index out of range")
        return self._value(index % len(self))

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self._blocks())

    def __contains__(self, value: object) -> bool:
        if value is None:
            return bool(self._missing().any())
        return any(item == value for item in self)

    def count(self, value: Any) -> int:
        if value is None:
            return int(self._missing().sum())
        return sum(1 for item in self if item == value)

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        if value is None and start == 0 and stop is None:
            missing = np.flatnonzero(self._missing())
            if missing.size:
                return int(missing[0])
            raise ValueError("None is not in the column")
        return super().index(value, start, len(self) if stop is None else stop)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(repr(v) for v in self[:5])
        return f"{type(self).__name__}([{shown}{', ...' if len(self) > 5 else ''}], n={len(self)})"


class FloatColumn(Column):
    """Numbers (always finite when present), float64, NaN for a record without one."""

    def __init__(self, values: np.ndarray):
        self._values = values

    def __len__(self) -> int:
        return int(self._values.size)

    def floats(self) -> np.ndarray:
        return self._values.copy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._values.astype(dtype or np.float64, copy=True)

    def _missing(self) -> np.ndarray:
        missing: np.ndarray = np.isnan(self._values)
        return missing

    def _value(self, index: int) -> float | None:
        value = float(self._values[index])
        return None if value != value else value

    def _blocks(self) -> Iterator[list[Any]]:
        for start in range(0, self._values.size, _ITERATE_BLOCK):
            values = self._values[start : start + _ITERATE_BLOCK]
            block = values.tolist()
            yield [None if v != v else v for v in block] if np.isnan(values).any() else block


class IntColumn(Column):
    """Integers (flags, integer classes) as int64, with a mask of the records that have one."""

    def __init__(self, values: np.ndarray, present: np.ndarray):
        self._values, self._present = values, present
        self._complete = bool(present.all())

    def __len__(self) -> int:
        return int(self._values.size)

    def floats(self) -> np.ndarray:
        return np.where(self._present, self._values, np.nan)

    def integers(self) -> tuple[np.ndarray, np.ndarray]:
        """(the values, 0 where missing; which records have one): read-only views."""
        values, present = self._values.view(), self._present.view()
        values.flags.writeable = present.flags.writeable = False
        return values, present

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._complete:
            return self._values.astype(dtype or np.int64, copy=True)
        return np.array(list(self), dtype=dtype)

    def _missing(self) -> np.ndarray:
        return ~self._present

    def _value(self, index: int) -> int | None:
        return int(self._values[index]) if self._present[index] else None

    def _blocks(self) -> Iterator[list[Any]]:
        for start in range(0, self._values.size, _ITERATE_BLOCK):
            block = self._values[start : start + _ITERATE_BLOCK].tolist()
            if self._complete:
                yield block
            else:
                present = self._present[start : start + _ITERATE_BLOCK].tolist()
                yield [v if p else None for v, p in zip(block, present, strict=True)]


class CategoryColumn(Column):
    """Group values: one int32 code a record into the distinct values (-1: no value)."""

    def __init__(self, codes: np.ndarray, categories: list[str]):
        self._codes, self.categories = codes, categories
        self._lookup = np.array([*categories, None], dtype=object)  # code -1 -> None

    def __len__(self) -> int:
        return int(self._codes.size)

    def codes(self) -> np.ndarray:
        """Each record's code into `categories` (-1 where it has no value): a read-only view."""
        codes = self._codes.view()
        codes.flags.writeable = False
        return codes

    def floats(self) -> np.ndarray:
        raise TypeError("group values are not numbers")

    def _missing(self) -> np.ndarray:
        return self._codes < 0

    def _value(self, index: int) -> str | None:
        code = int(self._codes[index])
        return None if code < 0 else self.categories[code]

    def _blocks(self) -> Iterator[list[Any]]:
        for start in range(0, self._codes.size, _ITERATE_BLOCK):
            yield self._lookup[self._codes[start : start + _ITERATE_BLOCK]].tolist()


def float_values(column: Sequence[Any]) -> np.ndarray:
    """A column's values as float64, NaN where a record has none: at array speed for a typed
    column, by a loop for a list."""
    if isinstance(column, Column):
        return column.floats()
    return np.array([np.nan if v is None else float(v) for v in column], dtype=np.float64)


@dataclass
class Dataset:
    """A validated file: one column per known field (None where a record lacks it) and one per
    group attribute, plus what the provenance needs. Numeric, flag, integer class and group
    columns are typed `Column`s; the others are lists."""

    n: int
    input_format: str
    sha256: str
    size_bytes: int
    lines: Sequence[int]
    ids: list[str | None]
    columns: dict[str, Sequence[Any]]
    groups: dict[str, Sequence[str | None]]
    ignored_fields: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    class_kinds: frozenset[str] = frozenset()

    def column(self, name: str) -> Sequence[Any]:
        return self.columns.get(name) or [None] * self.n

    def has(self, name: str) -> bool:
        return name in self.columns


class _Invalid(Exception):
    """A field value that breaks the contract (message only; the caller adds line and field)."""


def _describe(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(name: str) -> str:
    """A field name fit for a message: control characters and surrogates escaped."""
    return name if name.isprintable() else json.dumps(name)[1:-1]


def _field_of(keys: list[str | None]) -> str | None:
    """The field a problem lies in, from the JSON string tokens that opened its levels: the
    record's key, or `groups.<attribute>` inside the group attributes."""
    names: list[str] = []
    for token in keys[:2]:
        if token is None:
            break
        try:
            names.append(json.loads(token))
        except ValueError:
            names.append(token[1:-1])
    if not names:
        return None
    if names[0] == "groups" and len(names) > 1:
        return _shown(f"groups.{names[1]}")
    return _shown(names[0])


class _TooLong(Exception):
    """An integer literal longer than `MAX_NUMBER_DIGITS` digits (from the decoder's hook)."""


def _integer(literal: str) -> int:
    """The JSON decoder's `parse_int`: refuses a long literal before int() sees it."""
    if len(literal) > MAX_NUMBER_DIGITS and len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _TooLong
    return int(literal)


def _long_integer(token: str) -> bool:
    digits = token.lstrip("-")
    return len(digits) > MAX_NUMBER_DIGITS and digits.isdigit()


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
_TOO_LONG = f"an integer with more than {MAX_NUMBER_DIGITS} digits"


def _loads(text: str, decoder: json.JSONDecoder | None = None) -> Any:
    """The JSON value of `text`, held to `MAX_DEPTH` and `MAX_NUMBER_DIGITS`. Raises `_Invalid`
    naming the problem (`_locate` finds its field) or JSONDecodeError."""
    decoder = decoder or _DECODER
    try:
        if text[:1] == "{":  # the common case, without decode()'s whitespace regexes
            value, end = decoder.raw_decode(text)
            if end != len(text) and text[end:].strip():
                raise json.JSONDecodeError("Extra data", text, end)
        else:
            value = decoder.decode(text)
    except RecursionError:
        raise _Invalid(_TOO_DEEP) from None
    except _TooLong:
        raise _Invalid(_TOO_LONG) from None
    # Only a text with more brackets than the limit can nest deeper; most have far fewer.
    if (
        text.count("[") + text.count("{") > MAX_DEPTH
        and type(value) in _CONTAINERS
        and _too_deep(value)
    ):
        raise _Invalid(_TOO_DEEP)
    return value


_CONTAINERS = frozenset((dict, list))


def _too_deep(value: Any) -> bool:
    """Whether a decoded value nests deeper than `MAX_DEPTH`, level by level (no recursion: the
    decoder may have managed more levels than Python code can recurse through)."""
    level = [value]
    for _ in range(MAX_DEPTH):
        below = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) in _CONTAINERS:
                    below.append(child)
        if not below:
            return False
        level = below
    return True


def _locate(text: str, problem: str) -> str | None:
    """The field holding a JSON text's too deep value or too long integer, found by walking its
    tokens (no recursion, no int()); only a refused line gets here."""
    last: list[str | None] = [None]  # the last string seen at each level: in a record, a key
    opened_by: list[str | None] = []  # the string seen before each open level was opened
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first == '"':
            last[-1] = token
        elif first in "[{":
            opened_by.append(last[-1])
            last.append(None)
            if problem == _TOO_DEEP and len(opened_by) > MAX_DEPTH:
                return _field_of(opened_by[1:])
        elif first in "]}":
            if opened_by:
                opened_by.pop()
                last.pop()
        elif problem == _TOO_LONG and _long_integer(token):
            return _field_of([*opened_by[1:], last[-1]])
    return None


def _text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as text (PostgreSQL's text and JSON types hold neither a NUL
    nor an unpaired surrogate; SQLite's driver refuses surrogates), or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which is not allowed in text"
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        return (
            f"contains an unpaired surrogate (\\u{ord(surrogate.group()):04x}), which is not "
            "valid text"
        )
    return None


def _bad_text(value: Any) -> tuple[str, str | None] | None:
    """The first key or string in a decoded JSON value that text cannot hold, as (reason,
    field): the record's key, or `groups.<attribute>`."""
    found = _first_bad_text(value, None)
    if found is None:
        return None
    problem, field = found
    return problem, None if field is None else _shown(field)


def _first_bad_text(value: Any, field: str | None) -> tuple[str, str | None] | None:
    # Depth is bounded: a deeper value was refused by `_loads`.
    if isinstance(value, str):
        problem = _text_problem(value)
        return None if problem is None else (problem, field)
    if isinstance(value, dict):
        for key, item in value.items():
            here = key if field is None else f"groups.{key}" if field == "groups" else field
            problem = _text_problem(key)
            if problem is not None:
                return f"the name {problem}", here
            found = _first_bad_text(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _first_bad_text(item, field)
            if found is not None:
                return found
    return None


def _json_cell(text: str) -> Any:
    """A CSV cell holding JSON (a class list, log-probabilities), held to the same limits as a
    JSON line. Raises `_Invalid`, or ValueError for JSON that does not parse."""
    value = _loads(text)
    bad = _bad_text(value)
    if bad is not None:
        raise _Invalid(bad[0])
    return value


def _finite(value: float) -> float:
    if math.isnan(value):
        raise _Invalid("NaN is not allowed (numbers must be finite)")
    if math.isinf(value):
        raise _Invalid(f"{_describe(value)} is not allowed (numbers must be finite)")
    return value


def _number(value: Any, csv_cell: bool) -> float:
    if csv_cell:
        try:
            number = float(value)
        except ValueError:
            raise _Invalid(f"expected a number, got {_describe(value)}") from None
        return _finite(number)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number, got {_json_type(value)} {_describe(value)}")
    return _finite(float(value))


def _flag(value: Any, csv_cell: bool) -> int:
    if csv_cell:
        flag = _FLAGS.get(value.strip().lower())
        if flag is None:
            raise _Invalid(f"expected 0/1 or true/false, got {_describe(value)}")
        return flag
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise _Invalid(f"expected 0/1 or true/false, got {_describe(value)}")


def _class_item(item: Any) -> int | str | tuple[int, int, str]:
    if isinstance(item, bool):
        return int(item)
    if isinstance(item, int | str):
        return item
    if (
        isinstance(item, list)
        and len(item) == 3
        and all(isinstance(x, int) and not isinstance(x, bool) for x in item[:2])
        and isinstance(item[2], str)
    ):
        return (item[0], item[1], item[2])
    raise _Invalid(
        f"list items must be codes (strings or integers) or [start, end, type] spans, "
        f"got {_describe(item)}"
    )


def _class(value: Any, csv_cell: bool) -> int | str | tuple[Any, ...]:
    if csv_cell:
        text = value.strip()
        if text.startswith("["):
            try:
                value = _json_cell(text)
            except ValueError:
                raise _Invalid(f"{_describe(value)} is not a valid JSON list") from None
        elif _INTEGER.fullmatch(text):
            if _long_integer(text.lstrip("+")):
                raise _Invalid(_TOO_LONG)
            return int(text)
        else:
            return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str):
        return value
    if isinstance(value, list):
        items = tuple(_class_item(item) for item in value)
        kinds = {isinstance(item, tuple) for item in items}
        if len(kinds) > 1:
            raise _Invalid("a list must hold either codes or [start, end, type] spans, not both")
        return items
    raise _Invalid(
        "expected 0/1, an integer class, a string class or code, or a list, got "
        f"{_json_type(value)} {_describe(value)}"
    )


def _probability(value: Any, csv_cell: bool) -> float:
    number = _number(value, csv_cell)
    if not 0.0 <= number <= 1.0:
        raise _Invalid(f"{_describe(number)} is outside 0..1")
    return number


def _nonnegative(value: Any, csv_cell: bool) -> float:
    number = _number(value, csv_cell)
    if number < 0:
        raise _Invalid(f"{_describe(number)} is negative")
    return number


def _text(value: Any, csv_cell: bool) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected text, got {_json_type(value)} {_describe(value)}")
    return value


def _key(value: Any, csv_cell: bool) -> str:
    if isinstance(value, str) and value:
        return value
    raise _Invalid(f"expected a non-empty string, got {_json_type(value)} {_describe(value)}")


def _logprobs(value: Any, csv_cell: bool) -> tuple[float, ...]:
    if csv_cell:
        try:
            value = _json_cell(value)
        except ValueError:
            raise _Invalid(
                f"expected a JSON list of log-probabilities, got {_describe(value)}"
            ) from None
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of log-probabilities, got {_json_type(value)}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _Invalid(f"expected numbers in the list, got {_describe(item)}")
        number = _finite(float(item))
        if number > 0:
            raise _Invalid(f"{_describe(number)} is positive; log-probabilities are at most 0")
        out.append(number)
    return tuple(out)


_PARSERS: dict[str, Callable[[Any, bool], Any]] = {
    "id": _key,
    "key": _key,
    "class": _class,
    "probability": _probability,
    "text": _text,
    "logprobs": _logprobs,
    "nonnegative": _nonnegative,
    "number": lambda value, csv_cell: _number(value, csv_cell),
    "flag": _flag,
}


_FINITE_KINDS = ("number", "nonnegative")


def _parse(kind: str, value: Any, csv_cell: bool, line: int, name: str) -> Any:
    try:
        return _PARSERS[kind](value, csv_cell)
    except _Invalid as problem:
        raise RecordError(str(problem), line=line, field=name) from None


def _group_value(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    raise _Invalid(f"group values must be strings or integers, got {_describe(value)}")


def detect_format(filename: str) -> str:
    """`jsonl` or `csv` from the file name's extension."""
    lower = filename.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    raise RecordError(
        f'cannot tell the format of "{filename}": name it .jsonl, .ndjson or .json '
        "(JSON Lines) or .csv"
    )


class _Reader:
    """Reads a binary stream in chunks, hashing and counting bytes, yielding numbered lines."""

    def __init__(self, stream: IO[bytes], limits: Limits):
        self.stream = stream
        self.limits = limits
        self.hasher = hashlib.sha256()
        self.size = 0
        self.header_seen = False

    def lines(self) -> Iterator[tuple[int, str]]:
        number = 0
        pending = b""
        while True:
            chunk = self.stream.read(CHUNK_BYTES)
            if not chunk:
                break
            if isinstance(chunk, str):
                raise TypeError("open the file in binary mode ('rb')")
            self.size += len(chunk)
            if self.size > self.limits.max_bytes:
                raise RecordError(
                    f"the file is larger than the limit of {self.limits.max_bytes:,} bytes"
                )
            self.hasher.update(chunk)
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            for raw in parts:
                number += 1
                yield number, self._decode(raw, number)
        if pending:
            number += 1
            yield number, self._decode(pending, number)

    @staticmethod
    def _decode(raw: bytes, number: int) -> str:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RecordError(
                f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})",
                line=number,
            ) from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        return text


def _reject_constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_integer)


def _raw_nul(text: str, number: int) -> RecordError:
    """The refusal of a JSON line holding a raw NUL byte, naming the field when the line parses
    once control characters are let into strings."""
    try:
        obj = _loads(text, json.JSONDecoder(strict=False, parse_int=_integer))
    except (_Invalid, ValueError):
        obj = None
    bad = _bad_text(obj) if isinstance(obj, dict) else None
    if bad is not None:
        return RecordError(bad[0], line=number, field=bad[1])
    return RecordError(
        f"contains a NUL byte (at column {text.index(chr(0)) + 1}), which is not allowed",
        line=number,
    )


def _jsonl_records(reader: _Reader) -> Iterator[tuple[int, dict[str, Any], bool]]:
    for number, text in reader.lines():
        if not text.strip():
            continue
        if "\x00" in text:
            raise _raw_nul(text, number)
        try:
            obj = _loads(text)
        except json.JSONDecodeError as error:
            raise RecordError(
                f"not valid JSON ({error.msg} at column {error.colno})", line=number
            ) from None
        except _Invalid as problem:
            reason = str(problem)
            raise RecordError(reason, line=number, field=_locate(text, reason)) from None
        if not isinstance(obj, dict):
            raise RecordError(
                f"expected one JSON object per line (JSON Lines), got {_json_type(obj)}",
                line=number,
            )
        # Only an escape can put a NUL or a lone surrogate into decoded text (the decoder
        # refuses raw control characters, UTF-8 decoding refuses encoded surrogates).
        if "\\u0000" in text or "\\ud" in text or "\\uD" in text:
            bad = _bad_text(obj)
            if bad is not None:
                raise RecordError(bad[0], line=number, field=bad[1])
        yield number, obj, False


def _csv_records(reader: _Reader) -> Iterator[tuple[int, dict[str, Any], bool]]:
    state = {"line": 0, "nul": 0}

    def source() -> Iterator[str]:
        for number, text in reader.lines():
            state["line"] = number
            if "\x00" in text:
                state["nul"] = 1
            yield text + "\n"

    rows = csv.reader(source(), strict=True)
    header: list[str] | None = None
    next_start = 1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as error:
            raise RecordError(f"not valid CSV ({error})", line=state["line"]) from None
        start, next_start = next_start, state["line"] + 1
        if state["nul"]:
            state["nul"] = 0
            _refuse_nul_cell(row, header, start)
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [name.strip() for name in row]
            seen: set[str] = set()
            for name in header:
                if not name:
                    raise RecordError("the header has an empty column name", line=start)
                if name in seen:
                    raise RecordError(f'the header names column "{name}" twice', line=start)
                seen.add(name)
            reader.header_seen = True
            continue
        if len(row) != len(header):
            raise RecordError(
                f"{len(row)} values but the header has {len(header)} columns", line=start
            )
        record: dict[str, Any] = {}
        groups: dict[str, Any] = {}
        for name, cell in zip(header, row, strict=True):
            if name.startswith("group."):
                groups[name[len("group.") :]] = cell
            elif FIELD_KINDS.get(name) == "text" or cell.strip():
                record[name] = cell
        if groups:
            record["groups"] = groups
        yield start, record, True


def _refuse_nul_cell(row: list[str], header: list[str] | None, line: int) -> None:
    """Refuse the first cell of a CSV row that holds a NUL character, naming its column."""
    for position, cell in enumerate(row):
        problem = _text_problem(cell)
        if problem is None:
            continue
        if header is None:
            raise RecordError(f"a column name in the header {problem}", line=line)
        name = header[position] if position < len(header) else None
        if name is not None and name.startswith("group."):
            name = f"groups.{name[len('group.') :]}"
        raise RecordError(problem, line=line, field=name)


def parse_records(
    stream: IO[bytes],
    *,
    filename: str,
    metrics: Sequence[str],
    limits: Limits | None = None,
    optional_metrics: Sequence[str] = (),
) -> Dataset:
    """Read and validate a whole file of evaluation records.

    `metrics` are required: every record must carry the fields each needs. `optional_metrics`
    (a task preset's suite) are lenient: a metric whose fields no record carries is marked
    unavailable with a reason instead of refusing the file; a field that some records carry
    and others lack still refuses it. Raises `RecordError` naming the line and field.
    """
    limits = limits or Limits()
    input_format = detect_format(filename)
    unknown = [m for m in [*metrics, *optional_metrics] if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}")
    reader = _Reader(stream, limits)
    source = _jsonl_records(reader) if input_format == "jsonl" else _csv_records(reader)

    # Columns are built as records are read: no record is kept as a parsed object.
    builders: dict[str, _Builder] = {}
    appenders: dict[str, Callable[[Any], None]] = {}  # each builder's values.append
    lines = array("q")
    ids: list[str | None] = []
    seen_ids: set[str] = set()
    group_columns: dict[str, _GroupBuilder] = {}
    ignored: set[str] = set()
    class_kinds: set[str] = set()
    class_kind_lines: dict[str, int] = {}

    index = 0
    for number, obj, csv_cell in source:
        if index >= limits.max_rows:
            raise RecordError(
                f"more than {limits.max_rows:,} records; the limit is {limits.max_rows:,}",
                line=number,
            )
        record_id = None
        added = grouped = 0
        for name, value in obj.items():
            if name == "groups":
                grouped = _parse_groups(value, number, index, group_columns, csv_cell)
                continue
            kind = FIELD_KINDS.get(name)
            if kind is None:
                ignored.add(name)
                continue
            if value is None:
                continue
            # Fast paths for the common well-formed JSON values; everything else (and every
            # CSV cell) goes through the full parser, which explains what is wrong.
            kind_here = None
            vtype = type(value)
            if csv_cell:
                parsed_value = _parse(kind, value, True, number, name)
            elif kind == "class" and (vtype is int or vtype is str):
                parsed_value, kind_here = value, ("int" if vtype is int else "str")
            elif (
                (kind == "text" and vtype is str)
                or (kind == "probability" and vtype is float and 0.0 <= value <= 1.0)
                or (
                    kind in _FINITE_KINDS
                    and vtype is float
                    and value - value == 0.0
                    and (kind == "number" or value >= 0)
                )
                or ((kind == "key" or kind == "id") and vtype is str and value)
            ):
                parsed_value = value
            else:
                parsed_value = _parse(kind, value, False, number, name)
            if kind == "id":
                record_id = parsed_value
                continue
            append = appenders.get(name)
            if append is None:
                builders[name] = _builder(kind, index)
                append = appenders[name] = builders[name].values.append
            try:
                append(parsed_value)
            except (TypeError, OverflowError):  # an integer column meets a string, a list of
                # codes or an integer beyond int64: it becomes a list
                builders[name] = builders[name].as_list()  # type: ignore[attr-defined]
                append = appenders[name] = builders[name].values.append
                append(parsed_value)
            added += 1
            if kind == "class":
                if kind_here is None:
                    kind_here = _kind_of(parsed_value)
                if kind_here not in class_kinds:
                    together = {*class_kinds, kind_here}
                    if not any(together <= group for group in _COMPATIBLE_KINDS):
                        other = min(class_kinds, key=class_kind_lines.__getitem__)
                        raise RecordError(
                            f"{_describe(value)} is {_KIND_WORDS[kind_here]}, but line "
                            f"{class_kind_lines[other]} has {_KIND_WORDS[other]}; use one kind "
                            "for label, prediction and perturbed_prediction",
                            line=number,
                            field=name,
                        )
                    class_kinds.add(kind_here)
                    class_kind_lines[kind_here] = number
        if added != len(builders):  # fields this record lacks
            for builder in builders.values():
                builder.pad(index + 1)
        if grouped != len(group_columns):
            for column in group_columns.values():
                column.pad(index + 1)
        if record_id is not None:
            if record_id in seen_ids:
                first = lines[ids.index(record_id)]  # only on the refusal: a set, not a dict
                raise RecordError(
                    f'duplicate id "{record_id}" (first seen on line {first})',
                    line=number,
                    field="id",
                )
            seen_ids.add(record_id)
        lines.append(number)
        ids.append(record_id)
        index += 1

    if not index:
        if reader.header_seen:
            raise RecordError("the file is empty (a header but no records)")
        raise RecordError("the file is empty")

    n = index
    del seen_ids
    columns = {name: builders[name].finish(n) for name in sorted(builders)}
    groups: dict[str, Sequence[str | None]] = {}
    for attribute in sorted(group_columns):
        values = group_columns[attribute]
        if len(values.categories) > limits.max_group_values:
            raise RecordError(
                f'group attribute "{attribute}" has {len(values.categories)} distinct values; at '
                f"most {limits.max_group_values} are supported (use bands or categories)",
                field=f"groups.{attribute}",
            )
        groups[attribute] = values.finish(n)

    dataset = Dataset(
        n=n,
        input_format=input_format,
        sha256=reader.hasher.hexdigest(),
        size_bytes=reader.size,
        lines=lines,
        ids=ids,
        columns=columns,
        groups=groups,
        ignored_fields=sorted(ignored),
        class_kinds=frozenset(class_kinds),
    )
    _check_requirements(dataset, list(metrics), strict=True)
    _check_requirements(dataset, [m for m in optional_metrics if m not in metrics], strict=False)
    return dataset


# Kinds of class value that may share a file: integers; strings and lists of codes (coding
# files mix single codes and lists); lists of spans.
_COMPATIBLE_KINDS = ({"int"}, {"str", "codes", "list"}, {"spans", "list"})
_KIND_WORDS = {
    "int": "an integer class",
    "str": "a string class",
    "codes": "a list of codes",
    "spans": "a list of spans",
    "list": "an empty list",
}


def _kind_of(value: Any) -> str:
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    if not value:
        return "list"
    return "spans" if isinstance(value[0], tuple) else "codes"


_FLOAT_KINDS = frozenset({"probability", "number", "nonnegative"})
_INT_KINDS = frozenset({"flag", "class"})


class _Builder:
    """One field's values, appended as the records are read (`values.append` is the hot path);
    `pad` gives the records that lack the field None."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: Any = []

    def pad(self, size: int) -> None:
        if len(self.values) < size:
            self.values.extend([None] * (size - len(self.values)))

    def finish(self, n: int) -> Sequence[Any]:
        self.pad(n)
        values: list[Any] = self.values
        return values


class _FloatBuilder(_Builder):
    """Numbers (always floats once parsed) into float64, NaN for a record without one."""

    __slots__ = ()

    def __init__(self) -> None:
        self.values = array("d")

    def pad(self, size: int) -> None:
        if len(self.values) < size:
            self.values.extend(array("d", [math.nan]) * (size - len(self.values)))

    def finish(self, n: int) -> Sequence[Any]:
        self.pad(n)
        return FloatColumn(np.frombuffer(self.values, dtype=np.float64))


class _IntBuilder(_Builder):
    """Flags and integer classes into int64, with the runs of records that lack one. Its
    `values.append` refuses a string, a list of codes or an integer beyond int64 (TypeError,
    OverflowError): the column then becomes a list (`as_list`)."""

    __slots__ = ("gaps",)

    def __init__(self) -> None:
        self.values = array("q")
        self.gaps: list[tuple[int, int]] = []

    def pad(self, size: int) -> None:
        if len(self.values) < size:
            self.gaps.append((len(self.values), size))
            self.values.extend(array("q", [0]) * (size - len(self.values)))

    def as_list(self) -> _Builder:
        builder = _Builder()
        builder.values = self.values.tolist()
        for start, stop in self.gaps:
            builder.values[start:stop] = [None] * (stop - start)
        return builder

    def finish(self, n: int) -> Sequence[Any]:
        self.pad(n)
        present = np.ones(n, dtype=np.bool_)
        for start, stop in self.gaps:
            present[start:stop] = False
        return IntColumn(np.frombuffer(self.values, dtype=np.int64), present)


def _builder(kind: str, size: int) -> _Builder:
    """An empty column for a field of `kind` first seen at record `size`."""
    builder = (
        _FloatBuilder()
        if kind in _FLOAT_KINDS
        else _IntBuilder()
        if kind in _INT_KINDS
        else _Builder()
    )
    builder.pad(size)
    return builder


class _GroupBuilder:
    """One group attribute's values as codes into its distinct values, in order of appearance;
    -1 for a record without one."""

    __slots__ = ("categories", "code_of", "codes")

    def __init__(self) -> None:
        self.codes = array("i")
        self.code_of: dict[str, int] = {}
        self.categories: list[str] = []

    def new(self, value: str) -> int:
        code = self.code_of[value] = len(self.categories)
        self.categories.append(value)
        return code

    def pad(self, size: int) -> None:
        if len(self.codes) < size:
            self.codes.extend(array("i", [-1]) * (size - len(self.codes)))

    def finish(self, n: int) -> CategoryColumn:
        self.pad(n)
        return CategoryColumn(np.frombuffer(self.codes, dtype=np.int32), self.categories)


def _parse_groups(
    value: Any,
    number: int,
    index: int,
    group_columns: dict[str, _GroupBuilder],
    csv_cell: bool,
) -> int:
    """Add record `index`'s group values to their columns; how many it has."""
    if value is None:
        return 0
    if not isinstance(value, dict):
        raise RecordError(
            f"expected an object of group attributes, got {_json_type(value)}",
            line=number,
            field="groups",
        )
    added = 0
    for attribute, raw in value.items():
        if type(raw) is str and raw:  # the common case
            group = raw
        else:
            try:
                group = _group_value(raw)
            except _Invalid as problem:
                raise RecordError(str(problem), line=number, field=f"groups.{attribute}") from None
            if group is None:
                continue
        column = group_columns.get(attribute)
        if column is None:
            if not attribute:
                raise RecordError(
                    "a group attribute has an empty name", line=number, field="groups"
                )
            column = group_columns[attribute] = _GroupBuilder()
            column.pad(index)
        code = column.code_of.get(group)
        column.codes.append(column.new(group) if code is None else code)
        added += 1
    return added


def _check_requirements(dataset: Dataset, metrics: list[str], *, strict: bool) -> None:
    """Refuse records that lack a field a metric needs, or carry a class of the wrong kind."""
    for metric in metrics:
        fields = required_fields(metric, dataset)
        missing_everywhere = [name for name in fields if name != "groups" and not dataset.has(name)]
        if "groups" in fields and not dataset.groups:
            missing_everywhere.append("groups")
        if missing_everywhere and not strict:
            names = ", ".join(f'"{name}"' for name in missing_everywhere)
            dataset.unavailable[metric] = f"no record carries {names}"
            continue
        for name in fields:
            if name == "groups":
                if not dataset.groups:
                    raise RecordError(
                        f'missing, but metric "{metric}" needs group attributes',
                        line=dataset.lines[0],
                        field="groups",
                    )
                continue
            column = dataset.column(name)
            if None in column:
                index = column.index(None)
                raise RecordError(
                    f'missing, but metric "{metric}" needs it',
                    line=dataset.lines[index],
                    field=name,
                )
        requirement = class_requirement(metric)
        if requirement is None:
            continue
        problem = _class_problem(dataset, requirement)
        if problem is None:
            continue
        index, name, message = problem
        if not strict:
            dataset.unavailable[metric] = message
            continue
        raise RecordError(
            f'metric "{metric}" {message}, got {_describe(_jsonable(dataset.column(name)[index]))}',
            line=dataset.lines[index],
            field=name,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    return value


_ACCEPTS = {
    "int": ("int",),
    "spans": ("spans", "list"),
    "codes": ("int", "str", "codes", "list"),
    "single": ("int", "str"),
}
_CLASS_MESSAGES = {
    "int": "needs integer levels",
    "spans": "needs lists of [start, end, type] spans",
    "codes": "needs codes (a string, an integer or a list of codes)",
    "single": "needs single classes, not lists",
}


def _class_problem(dataset: Dataset, requirement: str) -> tuple[int, str, str] | None:
    """The first record whose class kind does not suit the requirement (all records share one
    kind, checked while parsing, so only a mismatch needs the scan)."""
    if dataset.class_kinds <= set(_ACCEPTS[requirement]):
        return None
    for name in CLASS_FIELDS:
        for index, value in enumerate(dataset.column(name)):
            if value is not None and _kind_of(value) not in _ACCEPTS[requirement]:
                return index, name, _CLASS_MESSAGES[requirement]
    return None  # pragma: no cover - the kind came from some record
