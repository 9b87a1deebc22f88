"""Gate criteria written the way the committee says them, parsed into their fields.

    criterion = [scope ":"] target comparator threshold
    target    = bound "(" subject ")" | subject
    subject   = metric [ "(" group attribute ")" ]
    scope     = overall | each_group | worst_group
    bound     = value | ci_low | ci_high
    comparator = >= | > | <= | <     (≥ and ≤ too)

So `ci_low(recall) >= 0.9`, `demographic_parity_difference(sex) <= 0.1` and
`each_group:ci_low(recall(sex)) >= 0.8` (what `GateCriterion.expression` writes) all parse;
spaces anywhere between the parts are ignored. Pure: no database. An error says at which
column (counted from 1) and what was expected there. Whether the parsed criterion makes sense
(a fairness metric only overall, no matrix metric) is the gate criterion service's rule.
"""

import difflib
import math
import re
from typing import Any

from django.core.exceptions import ValidationError

from lifecycle.gates.models import Comparator, CriterionBound, CriterionScope
from lifecycle.metrics.registry import METRICS

EXAMPLE = "ci_low(recall) >= 0.9"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Longest first, so that ">=" is not read as ">" followed by "=".
_COMPARATORS = {">=": ">=", "≥": ">=", "<=": "<=", "≤": "<=", ">": ">", "<": "<"}
_ATTRIBUTE_MAX = 60


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # --- reading ---------------------------------------------------------------------------

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_spaces()
        return self.text[self.pos : self.pos + 1]

    def found(self) -> str:
        """What stands at the current position, for an error message."""
        self.skip_spaces()
        if self.pos >= len(self.text):
            return "the end of the criterion"
        rest = self.text[self.pos :].split()[0]
        return f"“{rest[:20]}”"

    def fail(self, message: str, at: int | None = None) -> ValidationError:
        column = (self.pos if at is None else at) + 1
        return ValidationError(
            "Column %(column)s: %(message)s",
            code="invalid_expression",
            params={"column": column, "message": message},
        )

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected “{char}” {what}, found {self.found()}.")
        self.pos += 1

    def name(self, expected: str) -> tuple[str, int]:
        self.skip_spaces()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"expected {expected}, found {self.found()}.")
        self.pos = match.end()
        return match.group(), match.start()

    # --- the grammar -----------------------------------------------------------------------

    def criterion(self) -> dict[str, Any]:
        if not self.text.strip():
            raise ValidationError(
                "Write the criterion as an expression, e.g. %(example)s.",
                code="empty_expression",
                params={"example": EXAMPLE},
            )
        scope = CriterionScope.OVERALL.value
        bound = CriterionBound.VALUE.value
        word, start = self.name("a metric, e.g. recall")
        if self.peek() == ":":
            scope = self.choice(word, start, CriterionScope.values, "scope")
            self.pos += 1
            word, start = self.name("a metric after the scope, e.g. recall")
        if self.peek() == "(" and _lookup(word, CriterionBound.values) is not None:
            bound = self.choice(word, start, CriterionBound.values, "bound")
            self.pos += 1
            word, start = self.name(f"a metric inside {bound}( ), e.g. {bound}(recall)")
            metric, attribute = self.subject(word, start)
            self.expect(")", f"to close {bound}(")
        else:
            metric, attribute = self.subject(word, start)
        comparator = self.comparator()
        threshold = self.threshold()
        self.skip_spaces()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.found()} after the threshold.")
        return {
            "metric": metric,
            "scope": scope,
            "group_attribute": attribute,
            "bound": bound,
            "comparator": comparator,
            "threshold": threshold,
        }

    def choice(self, word: str, start: int, allowed: list[str], what: str) -> str:
        chosen = _lookup(word, allowed)
        if chosen is None:
            raise self.fail(
                f"“{word}” is not a {what}; expected {_either(allowed)}.",
                at=start,
            )
        return chosen

    def subject(self, word: str, start: int) -> tuple[str, str]:
        metric = _lookup(word, list(METRICS))
        if metric is None:
            raise self.fail(_unknown_metric(word), at=start)
        attribute = ""
        if self.peek() == "(":
            self.pos += 1
            opened = self.pos
            close = self.text.find(")", opened)
            if close < 0:
                raise self.fail(f"the “(” after {metric} is never closed with “)”.", at=opened - 1)
            inner = self.text[opened:close]
            if "(" in inner:
                raise self.fail(
                    "a group attribute cannot contain “(”.", at=opened + inner.index("(")
                )
            attribute = inner.strip()
            if not attribute:
                raise self.fail(
                    f"expected a group attribute inside {metric}( ), e.g. {metric}(sex).",
                    at=opened,
                )
            if len(attribute) > _ATTRIBUTE_MAX:
                raise self.fail(
                    f"a group attribute has at most {_ATTRIBUTE_MAX} characters.", at=opened
                )
            self.pos = close + 1
        return metric, attribute

    def comparator(self) -> str:
        self.skip_spaces()
        for written, comparator in _COMPARATORS.items():
            if self.text.startswith(written, self.pos):
                if self.text.startswith("=", self.pos + len(written)):
                    raise self.fail(f"“{written}=” is not a comparator; expected {_COMPARE}.")
                self.pos += len(written)
                return comparator
        for reversed_, meant in (("=>", ">="), ("=<", "<=")):
            if self.text.startswith(reversed_, self.pos):
                raise self.fail(f"“{reversed_}” is not a comparator; did you mean {meant}?")
        if self.text.startswith(("=", "!"), self.pos):
            raise self.fail(
                f"{self.found()} is not a comparator: a criterion is a bound, so use {_COMPARE}."
            )
        raise self.fail(f"expected a comparator ({_COMPARE}), found {self.found()}.")

    def threshold(self) -> float:
        self.skip_spaces()
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"expected a number (the threshold), found {self.found()}.")
        after = match.end()
        if self.text.startswith(",", after) and self.text[after + 1 : after + 2].isdigit():
            raise self.fail("write decimals with a point, e.g. 0.9.", at=after)
        value = float(match.group())
        if not math.isfinite(value):
            raise self.fail("the threshold is too large.", at=match.start())
        self.pos = after
        return value


_COMPARE = ", ".join(Comparator.values[:-1]) + " or " + Comparator.values[-1]


def _lookup(word: str, allowed: list[str]) -> str | None:
    """`word` if allowed, else the one allowed name it matches ignoring case, else None."""
    if word in allowed:
        return word
    folded = [name for name in allowed if name.lower() == word.lower()]
    return folded[0] if len(folded) == 1 else None


def _either(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1]


def _unknown_metric(word: str) -> str:
    known = list(METRICS) + CriterionBound.values + CriterionScope.values
    close = difflib.get_close_matches(word, known, n=3, cutoff=0.6)
    close += [
        name for name in difflib.get_close_matches(word.lower(), known, n=3) if name not in close
    ]
    if close:
        return f"“{word}” is not a metric. Did you mean {_either_or_one(close[:3])}?"
    return f"“{word}” is not a metric; the metric keys are listed in docs/metrics.md."


def _either_or_one(names: list[str]) -> str:
    return names[0] if len(names) == 1 else _either(names)


def parse_criterion(text: str) -> dict[str, Any]:
    """The fields of the criterion written in `text` (metric, scope, group_attribute, bound,
    comparator, threshold), or a ValidationError saying at which column what was expected."""
    return _Parser(text).criterion()
