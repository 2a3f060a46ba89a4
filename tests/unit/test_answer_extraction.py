"""Final-answer extraction from an agent's last message, per convention."""

from __future__ import annotations

import pytest

from aworld_core.evaluation.answer_extraction import CONVENTIONS, extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("I think so. <answer>42</answer>", "42", id="single-tag"),
        pytest.param("<answer>  Paris \n</answer>", "Paris", id="whitespace-stripped"),
        pytest.param("<answer>draft</answer> wait... <answer>final</answer>", "final", id="last-tag-wins"),
        pytest.param("reasoning\n<answer>\nline one\nline two\n</answer>\n", "line one\nline two", id="multiline"),
        pytest.param("Out of tokens <answer> 17 apples", "17 apples", id="missing-closing-tag"),
        pytest.param("<answer>old</answer> then <answer>cut off", "cut off", id="last-tag-unclosed"),
        pytest.param("<answer>outer <answer>inner</answer></answer>", "inner", id="nested-takes-innermost"),
        pytest.param("<ANSWER>Q3</ANSWER>", "Q3", id="tag-case-insensitive"),
        pytest.param("<answer></answer>", "", id="empty-tag-is-empty-string"),
        pytest.param("no tags here, the answer is 42", None, id="no-tag"),
        pytest.param("garbage </answer> <answr>x</answr>", None, id="only-closing-or-misspelled"),
        pytest.param("<answer>a < b > c</answer>", "a < b > c", id="angle-brackets-inside"),
    ],
)
def test_answer_tag(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected
    assert extract_answer(text, convention="answer_tag") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Thoughts...\nFINAL ANSWER: 42", "42", id="simple"),
        pytest.param("FINAL ANSWER: first\nmore\nFINAL ANSWER:  second  \nbye", "second", id="last-wins-line-only"),
        pytest.param("final answer: paris", "paris", id="case-insensitive"),
        pytest.param("FINAL ANSWER:a, b, c", "a, b, c", id="no-space-after-colon"),
        pytest.param("FINAL ANSWER:\nnext line", "", id="empty-on-its-line"),
        pytest.param("The final result is 42", None, id="absent"),
        pytest.param("<answer>42</answer>", None, id="tag-is-not-this-convention"),
    ],
)
def test_final_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text, convention="final_answer") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("reasoning\n\n  Paris  \n\n", "Paris", id="skips-trailing-blank-lines"),
        pytest.param("only line", "only line", id="single-line"),
        pytest.param("a\r\nb\r\n", "b", id="crlf"),
        pytest.param("   \n\t\n", None, id="all-blank"),
    ],
)
def test_last_line(text: str, expected: str | None) -> None:
    assert extract_answer(text, convention="last_line") == expected


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
@pytest.mark.parametrize("text", ["", None])
def test_empty_or_missing_text_has_no_answer(convention: str, text: str | None) -> None:
    assert extract_answer(text, convention=convention) is None


def test_unknown_convention_names_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        extract_answer("<answer>1</answer>", convention="boxed")
    message = str(err.value)
    assert "boxed" in message
    for name in ("answer_tag", "final_answer", "last_line"):
        assert name in message


def test_unknown_convention_fails_even_without_text() -> None:
    with pytest.raises(ValueError):
        extract_answer(None, convention="nope")
