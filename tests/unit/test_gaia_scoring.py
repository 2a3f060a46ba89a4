"""GAIA's official scoring rules, pinned case by case (see aworld_core/evaluation/gaia_scoring.py)."""

from __future__ import annotations

import math

import pytest

from aworld_core.evaluation.gaia_scoring import (
    normalize_number_str,
    normalize_str,
    question_scorer,
    split_string,
)

# (model answer, ground truth, expected, id)
CASES: list[tuple[str | None, str, bool, str]] = [
    # --- rule 1: the ground truth is a number ---------------------------------------------------
    ("42", "42", True, "int-exact"),
    ("3.0", "3", True, "float-answer-int-truth"),
    ("3", "3.0", True, "int-answer-float-truth"),
    ("$42", "42", True, "dollar-stripped"),
    ("42%", "42", True, "percent-stripped"),
    ("42 %", "42", True, "percent-with-space-stripped"),
    ("1,000", "1000", True, "thousands-comma-stripped"),
    ("$1,234.50", "1234.5", True, "dollar-comma-decimal"),
    (" 17 ", "17", True, "number-surrounding-space"),
    ("-5", "-5", True, "negative-number"),
    ("0.5", ".5", True, "leading-dot-truth"),
    ("1e3", "1000", True, "scientific-notation-answer"),
    ("17 apples", "17", False, "number-with-word-unparseable"),
    ("seventeen", "17", False, "number-spelled-out"),
    ("", "17", False, "empty-answer-number-truth"),
    ("17.0001", "17", False, "near-miss-number"),
    ("1 000", "1000", False, "space-thousands-separator-not-stripped"),
    ("€42", "42", False, "euro-sign-not-stripped"),
    ("42 USD", "42", False, "currency-word-not-stripped"),
    (None, "42", False, "none-answer-number-truth"),
    ("abc", "inf", False, "unparseable-never-matches-even-inf"),
    # A ground truth "1,000" is not a float, so it is a two-element list (an official quirk).
    ("1,000", "1,000", True, "comma-number-truth-same-text"),
    ("1000", "1,000", False, "comma-number-truth-is-a-list"),
    # --- rule 2: the ground truth is a list ----------------------------------------------------
    ("a, b, c", "a, b, c", True, "list-exact"),
    ("A,B,C", "a, b, c", True, "list-case-and-spaces"),
    (" a ,b ", "a, b", True, "list-extra-spaces"),
    ("b, a, c", "a, b, c", False, "list-order-matters"),
    ("a, b", "a, b, c", False, "list-too-short"),
    ("a, b, c, d", "a, b, c", False, "list-too-long"),
    ("a; b; c", "a, b, c", True, "list-semicolons-vs-commas"),
    ("a, b; c", "a; b, c", True, "list-mixed-separators"),
    ("1, 2, 3", "1, 2, 3", True, "numeric-list"),
    ("1.0, $2, 3%", "1, 2, 3", True, "numeric-list-normalized"),
    ("1, two, 3", "1, 2, 3", False, "numeric-list-unparseable-element"),
    ("apple, 3.0", "apple, 3", True, "mixed-list-number-element"),
    ("apple, banana", "apple, 3", False, "mixed-list-word-for-number"),
    ("St. Louis, Denver", "St. Louis, Denver", True, "list-punct-kept-equal"),
    ("St Louis, Denver", "St. Louis, Denver", False, "list-punct-kept-differs"),
    ("a, b.", "a, b", False, "list-trailing-period-kept"),
    ("a,,b", "a, b", False, "list-empty-element-changes-length"),
    ("", "a, b", False, "list-empty-answer"),
    ("a b", "a, b", False, "list-answer-without-separator"),
    (None, "a, b", False, "none-answer-list-truth"),
    ("Blue Harbor, Quiet Engines", "Blue Harbor, Quiet Engines", True, "list-multiword"),
    ("blueharbor,quietengines", "Blue Harbor, Quiet Engines", True, "list-whitespace-removed"),
    # --- rule 3: the ground truth is a plain string ---------------------------------------------
    ("Paris", "paris", True, "string-case"),
    ("  Paris  ", "Paris", True, "string-outer-whitespace"),
    ("Paris.", "Paris", True, "string-trailing-period-removed"),
    ("sea gull", "seagull", True, "string-inner-space-removed"),
    ("Saint-Louis!", "saint louis", True, "string-punct-and-space-removed"),
    ("Mt. Everest", "Mt Everest", True, "string-abbreviation-period"),
    ("supportexample.org", "support@example.org", True, "string-punct-removal-collides"),
    ("1:30", "1:30", True, "string-time"),
    ("London", "Paris", False, "string-different"),
    ("Paris, France", "Paris", False, "string-truth-answer-with-comma"),
    ("", "Paris", False, "empty-answer-string-truth"),
    ("", "", True, "both-empty"),
    (None, "None", True, "none-answer-scored-as-None-string"),
    (None, "Paris", False, "none-answer-string-truth"),
    ("Zürich", "zürich", True, "unicode-lowercase"),
    ("ZÜRICH", "zurich", False, "unicode-accent-kept"),
    ("\u201cParis\u201d", "Paris", False, "curly-quotes-are-not-ascii-punct"),
    ("Paris\u00a0France", "Paris France", True, "unicode-nbsp-is-whitespace"),
    ("Tab\tand\nnewline", "tab and newline", True, "tabs-and-newlines-removed"),
]


@pytest.mark.parametrize(
    ("answer", "truth", "expected"),
    [pytest.param(a, t, e, id=i) for a, t, e, i in CASES],
)
def test_question_scorer(answer: str | None, truth: str, expected: bool) -> None:
    assert question_scorer(answer, truth) is expected


def test_case_ids_are_unique_and_plenty() -> None:
    ids = [case[3] for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 50


def test_missing_ground_truth_is_an_error_not_a_wrong_answer() -> None:
    with pytest.raises(ValueError, match="no published answer"):
        question_scorer("42", None)  # type: ignore[arg-type]


def test_non_string_answer_is_read_as_text() -> None:
    assert question_scorer(42, "42") is True  # type: ignore[arg-type]
    assert question_scorer(42, "43") is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("$1,234.50", 1234.5), ("12%", 12.0), ("-0.25", -0.25), ("7", 7.0), (" 8 ", 8.0)],
)
def test_normalize_number_str_reads_numbers(text: str, expected: float) -> None:
    assert normalize_number_str(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "1 000", "€5", "12 apples"])
def test_normalize_number_str_unparseable_is_nan(text: str) -> None:
    assert math.isnan(normalize_number_str(text))


def test_split_string_splits_on_both_separators_and_keeps_empties() -> None:
    assert split_string("a, b;c") == ["a", " b", "c"]
    assert split_string("a,,b") == ["a", "", "b"]
    assert split_string("abc") == ["abc"]
    assert split_string("a|b,c", char_list=["|"]) == ["a", "b,c"]


def test_normalize_str_with_and_without_punctuation() -> None:
    assert normalize_str(" St. Louis ") == "stlouis"
    assert normalize_str(" St. Louis ", remove_punct=False) == "st.louis"
    assert normalize_str("A\u00a0B\tC") == "abc"
    assert normalize_str("\u201cq\u201d") == "\u201cq\u201d"
