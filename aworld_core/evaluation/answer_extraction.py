"""Pull the final answer out of an agent's last message.

Why a separate step: the scorer (``gaia_scoring.question_scorer``) compares one short string with the
ground truth, but an agent's final message usually carries reasoning around that string. The
convention for marking the answer depends on the prompt the agent was given, so it is chosen by name:

- ``"answer_tag"``: ``<answer>...</answer>``, the AWorld agent's convention. The *last* tag wins,
  because agents often quote or draft an answer before committing to one. A final ``<answer>`` with
  no closing tag (generation cut off by the token limit) still yields the text after it.
- ``"final_answer"``: a ``FINAL ANSWER: ...`` line, the convention of GAIA's own system prompt; last
  occurrence wins, and the answer runs to the end of that line.
- ``"last_line"``: the last non-blank line, for prompts that ask for the answer alone.

Every convention returns ``None`` when no answer is present, so "no answer" stays distinguishable
from "empty answer" in evaluation reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["CONVENTIONS", "extract_answer"]

_OPEN_TAG = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</answer>", re.IGNORECASE)
_FINAL_ANSWER = re.compile(r"FINAL ANSWER\s*:[ \t]*(?P<answer>[^\r\n]*)", re.IGNORECASE)


def _from_answer_tag(text: str) -> str | None:
    """Text inside the last ``<answer>`` tag; tolerate a missing closing tag at the end of text.

    Scanning from the last opening tag (rather than matching ``<answer>(.*?)</answer>`` pairs) makes
    nested or repeated opening tags harmless: the innermost, latest one is the committed answer.
    """
    openings = list(_OPEN_TAG.finditer(text))
    if not openings:
        return None
    start = openings[-1].end()
    closing = _CLOSE_TAG.search(text, start)
    body = text[start : closing.start()] if closing else text[start:]
    return body.strip()


def _from_final_answer(text: str) -> str | None:
    """Rest of the line after the last ``FINAL ANSWER:`` marker, stripped."""
    matches = list(_FINAL_ANSWER.finditer(text))
    if not matches:
        return None
    return matches[-1].group("answer").strip()


def _from_last_line(text: str) -> str | None:
    """Last line that is not blank, stripped."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return None


CONVENTIONS: dict[str, Callable[[str], str | None]] = {
    "answer_tag": _from_answer_tag,
    "final_answer": _from_final_answer,
    "last_line": _from_last_line,
}


def extract_answer(text: str | None, convention: str = "answer_tag") -> str | None:
    """Return the final answer marked in ``text`` by ``convention``, or ``None`` if there is none.

    Raises ``ValueError`` naming the valid conventions when ``convention`` is unknown, so a typo in
    a config fails at once instead of scoring every task as unanswered.
    """
    try:
        extractor = CONVENTIONS[convention]
    except KeyError:
        valid = ", ".join(sorted(CONVENTIONS))
        raise ValueError(f"unknown answer convention {convention!r}; valid conventions: {valid}") from None
    if not text:
        return None
    return extractor(text)
