"""GAIA's official quasi-exact-match scorer, reimplemented.

Why a reimplementation: GAIA results are only comparable with the leaderboard if an answer is judged
by the same rules the leaderboard applies (``scorer.py`` in the gaia-benchmark/leaderboard space).
Those rules are short but full of quirks that change scores by whole points, so they are kept here
verbatim in behaviour and pinned by unit tests, never "improved":

1. Ground truth parses as a float -> the answer is stripped of ``$``, ``%`` and ``,`` and compared as
   a float. ``"3.0"`` matches ``"3"``; ``"3 apples"`` matches nothing.
2. Else the ground truth contains ``,`` or ``;`` -> both sides are lists split on ``[,;]``; they must
   have the same length and match element by element, in order. An element whose ground truth is a
   number is compared as in rule 1; any other element is compared lowercased with all whitespace
   removed but punctuation *kept*.
3. Else both sides are lowercased, all whitespace is removed, ASCII punctuation is removed, and the
   results must be equal.

A ``None`` answer is scored as the string ``"None"``, as the official code does.

One deliberate difference: the official ``normalize_number_str`` returns ``inf`` for an unparseable
string, so a garbage answer would "match" a ground truth of ``"inf"``. Here it returns ``nan``, which
equals nothing, so an unparseable answer never matches. No GAIA answer is infinite, so scores on the
real benchmark are identical.
"""

from __future__ import annotations

import logging
import math
import re
import string

__all__ = ["normalize_number_str", "normalize_str", "question_scorer", "split_string"]

logger = logging.getLogger(__name__)

# Characters GAIA strips before reading a number: units and thousands separators.
_NUMBER_NOISE = ("$", "%", ",")
_LIST_SEPARATORS = (",", ";")
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_WHITESPACE = re.compile(r"\s")


def normalize_number_str(number_str: str) -> float:
    """Read ``number_str`` as a float after removing ``$``, ``%`` and ``,``.

    Returns ``nan`` (never equal to anything, itself included) when the text is not a number, so a
    comparison with a ground truth is simply False rather than an exception mid-evaluation.
    """
    cleaned = number_str
    for char in _NUMBER_NOISE:
        cleaned = cleaned.replace(char, "")
    try:
        return float(cleaned)
    except ValueError:
        # Debug only: the text may be a model answer, and evaluation logs must stay quiet.
        logger.debug("answer is not a number; scoring it as no match")
        return math.nan


def split_string(s: str, char_list: tuple[str, ...] | list[str] = _LIST_SEPARATORS) -> list[str]:
    """Split ``s`` on any of ``char_list`` (default ``,`` and ``;``), keeping empty pieces.

    Empty pieces are kept on purpose: ``"a,,b"`` has three elements in GAIA's eyes, so a stray
    separator makes the lengths differ and the answer wrong.
    """
    pattern = "[" + "".join(re.escape(c) for c in char_list) + "]"
    return re.split(pattern, s)


def normalize_str(input_str: str, remove_punct: bool = True) -> str:
    """Lowercase ``input_str`` and remove every whitespace character (Unicode too).

    With ``remove_punct`` the ASCII punctuation of ``string.punctuation`` is removed as well;
    non-ASCII punctuation (curly quotes, en dashes) is kept, exactly as the official scorer does.
    Whitespace inside an answer is removed, not collapsed, so ``"sea gull"`` equals ``"seagull"``.
    """
    no_spaces = _WHITESPACE.sub("", input_str).lower()
    if remove_punct:
        return no_spaces.translate(_PUNCT_TABLE)
    return no_spaces


def _is_float(text: str) -> bool:
    """True when Python's ``float()`` accepts ``text`` (surrounding whitespace allowed)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def question_scorer(model_answer: str | None, ground_truth: str) -> bool:
    """Return True when ``model_answer`` counts as correct for ``ground_truth`` under GAIA's rules.

    See the module docstring for the three rules. Raises ``ValueError`` for a missing ground truth
    (GAIA's test split hides its answers): such a task cannot be scored locally at all, and counting
    it as wrong would silently deflate accuracy.
    """
    if ground_truth is None:
        raise ValueError("ground_truth is None: this task has no published answer and cannot be scored")
    answer = "None" if model_answer is None else str(model_answer)
    truth = str(ground_truth)

    if _is_float(truth):
        return normalize_number_str(answer) == float(truth)

    if any(sep in truth for sep in _LIST_SEPARATORS):
        truth_items = split_string(truth)
        answer_items = split_string(answer)
        if len(truth_items) != len(answer_items):
            logger.debug(
                "list answer has %d elements, ground truth %d: no match",
                len(answer_items),
                len(truth_items),
            )
            return False
        return all(
            _list_element_matches(answer_item, truth_item)
            for answer_item, truth_item in zip(answer_items, truth_items)
        )

    return normalize_str(answer) == normalize_str(truth)


def _list_element_matches(answer_item: str, truth_item: str) -> bool:
    """Compare one list element: as a number when the truth is one, else with punctuation kept.

    Punctuation is kept inside lists because list elements are often things like ``"1:30"`` or
    ``"St. Louis"`` where removing it could make two different answers equal.
    """
    if _is_float(truth_item):
        return normalize_number_str(answer_item) == float(truth_item)
    return normalize_str(answer_item, remove_punct=False) == normalize_str(truth_item, remove_punct=False)
