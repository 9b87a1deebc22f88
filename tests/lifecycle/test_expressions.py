"""Criteria written as expressions: what `GateCriterion.expression` writes parses back to the
same fields, the committee's friendlier forms parse too, and every mistake is refused with the
column and what was expected there."""

import re

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from lifecycle.gates.expressions import parse_criterion
from lifecycle.gates.models import Comparator, CriterionBound, CriterionScope, GateCriterion
from lifecycle.metrics import METRICS

FIELDS = ("metric", "scope", "group_attribute", "bound", "comparator", "threshold")

# Group attributes come from uploaded files: anything but parentheses, without surrounding
# spaces (the parser strips them), at most 60 characters like the model field.
attributes = st.one_of(
    st.just(""),
    st.text(
        alphabet=st.characters(blacklist_characters="()", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=60,
    ).filter(lambda a: a == a.strip() and a != ""),
)
# `expression` writes the threshold with `:g` (six significant digits): the round trip holds
# for the thresholds that survive that, which are the ones a committee writes.
thresholds = st.floats(allow_nan=False, allow_infinity=False).map(lambda x: float(f"{x:g}"))


@given(
    metric=st.sampled_from(sorted(METRICS)),
    scope=st.sampled_from(CriterionScope.values),
    group_attribute=attributes,
    bound=st.sampled_from(CriterionBound.values),
    comparator=st.sampled_from(Comparator.values),
    threshold=thresholds,
)
def test_the_expression_a_criterion_writes_parses_back_to_its_fields(**fields):
    criterion = GateCriterion(**fields)
    assert parse_criterion(criterion.expression) == fields


@given(
    metric=st.sampled_from(sorted(METRICS)),
    scope=st.sampled_from(CriterionScope.values),
    group_attribute=st.sampled_from(["", "sex", "age_band"]),
    bound=st.sampled_from(CriterionBound.values),
    comparator=st.sampled_from(Comparator.values),
    threshold=thresholds,
    spaces=st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=12, max_size=12),
)
def test_spaces_between_the_parts_change_nothing(spaces, **fields):
    # The parts: names, punctuation, the comparator and the threshold; any spaces between them.
    text = GateCriterion(**fields).expression
    parts = [p for p in re.split(r"(>=|<=|[():<>]|\s+)", text) if p.strip()]
    gaps = iter(spaces * 10)
    spaced = next(gaps) + "".join(part + next(gaps) for part in parts)
    assert parse_criterion(spaced) == fields


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ci_low(recall) >= 0.9", ("recall", "overall", "", "ci_low", ">=", 0.9)),
        ("recall >= 0.85", ("recall", "overall", "", "value", ">=", 0.85)),
        (
            "demographic_parity_difference(sex) <= 0.1",
            ("demographic_parity_difference", "overall", "sex", "value", "<=", 0.1),
        ),
        ("worst_group:recall(sex) >= 0.8", ("recall", "worst_group", "sex", "value", ">=", 0.8)),
        (
            "each_group:ci_low(recall(sex)) >= 0.8",
            ("recall", "each_group", "sex", "ci_low", ">=", 0.8),
        ),
        ("  auroc>=.85  ", ("auroc", "overall", "", "value", ">=", 0.85)),
        ("ci_high(ece) < 0.05", ("ece", "overall", "", "ci_high", "<", 0.05)),
        ("AUROC ≥ 0.8", ("auroc", "overall", "", "value", ">=", 0.8)),
        ("ece ≤ 1e-2", ("ece", "overall", "", "value", "<=", 0.01)),
        (
            "each_group:recall(age band) > 0.7",
            ("recall", "each_group", "age band", "value", ">", 0.7),
        ),
        ("overall:value(f1) >= 0.5", ("f1", "overall", "", "value", ">=", 0.5)),
    ],
)
def test_the_committee_s_forms_parse(text, expected):
    assert parse_criterion(text) == dict(zip(FIELDS, expected, strict=True))


def refusal(text: str) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_criterion(text)
    (message,) = caught.value.messages
    return message


def test_an_unknown_metric_is_refused_with_its_close_matches():
    assert refusal("recal >= 0.9") == "Column 1: “recal” is not a metric. Did you mean recall?"
    message = refusal("ci_low(precison) >= 0.9")
    assert message.startswith("Column 8: “precison” is not a metric. Did you mean precision")


def test_a_misspelt_bound_is_suggested():
    assert "Did you mean ci_low?" in refusal("ci_lo(recall) >= 0.9")


def test_a_metric_with_no_close_match_points_at_the_list():
    assert refusal("xyzzy >= 1") == (
        "Column 1: “xyzzy” is not a metric; the metric keys are listed in docs/metrics.md."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Write the criterion as an expression, e.g. ci_low(recall) >= 0.9."),
        ("   ", "Write the criterion as an expression, e.g. ci_low(recall) >= 0.9."),
        (">= 0.9", "Column 1: expected a metric, e.g. recall, found “>=”."),
        (
            "each:recall >= 0.9",
            "Column 1: “each” is not a scope; expected overall, each_group or worst_group.",
        ),
        ("recall 0.9", "Column 8: expected a comparator (>=, >, <= or <), found “0.9”."),
        (
            "recall = 0.9",
            "Column 8: “=” is not a comparator: a criterion is a bound, so use >=, >, <= or <.",
        ),
        ("recall => 0.9", "Column 8: “=>” is not a comparator; did you mean >=?"),
        ("recall =< 0.9", "Column 8: “=<” is not a comparator; did you mean <=?"),
        ("recall >== 0.9", "Column 8: “>==” is not a comparator; expected >=, >, <= or <."),
        (
            "recall >= ",
            "Column 11: expected a number (the threshold), found the end of the criterion.",
        ),
        ("recall >= high", "Column 11: expected a number (the threshold), found “high”."),
        ("recall >= 0,9", "Column 12: write decimals with a point, e.g. 0.9."),
        ("recall >= 0.9 and f1 >= 0.8", "Column 15: unexpected “and” after the threshold."),
        ("recall(sex >= 0.9", "Column 7: the “(” after recall is never closed with “)”."),
        (
            "recall() >= 0.9",
            "Column 8: expected a group attribute inside recall( ), e.g. recall(sex).",
        ),
        ("recall(a(b)) >= 1", "Column 9: a group attribute cannot contain “(”."),
        ("ci_low(recall >= 0.9", "Column 15: expected “)” to close ci_low(, found “>=”."),
        ("recall >= 1e999", "Column 11: the threshold is too large."),
        (
            "ci_low() >= 0.9",
            "Column 8: expected a metric inside ci_low( ), e.g. ci_low(recall), found “)”.",
        ),
        (
            f"recall({'x' * 61}) >= 0.9",
            "Column 8: a group attribute has at most 60 characters.",
        ),
    ],
)
def test_mistakes_say_where_and_what_was_expected(text, message):
    assert refusal(text) == message


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_with_a_validation_error(text):
    try:
        fields = parse_criterion(text)
    except ValidationError as exc:
        assert exc.messages and all(m for m in exc.messages)
    else:
        assert set(fields) == set(FIELDS)
        assert fields["metric"] in METRICS
