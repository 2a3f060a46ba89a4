"""Parse Hermes-style tool calls (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``).

Model output is untrusted: invalid JSON, a missing name, arguments of the wrong shape or an unclosed
tag must never crash an episode. Each problem becomes a ``ParseError`` whose message is fed back to
the agent as an observation (so it can recover) and is counted in the analytics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_CALLS_PER_TURN = 8
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(" + re.escape(CLOSE) + r"|$)", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class ParseError:
    raw: str
    message: str


def parse_tool_calls(text: str) -> tuple[list[ToolCall], list[ParseError]]:
    """All tool calls in ``text`` in order, plus one error per malformed block."""
    calls: list[ToolCall] = []
    errors: list[ParseError] = []
    for match in _BLOCK.finditer(text):
        raw, closing = match.group(1).strip(), match.group(2)
        if len(calls) + len(errors) >= MAX_CALLS_PER_TURN:
            errors.append(ParseError(raw[:200], f"more than {MAX_CALLS_PER_TURN} tool calls in one turn"))
            break
        if not closing:
            errors.append(ParseError(raw[:200], f"tool call not closed with {CLOSE}"))
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(ParseError(raw[:200], f"tool call is not valid JSON ({exc.msg} at char {exc.pos})"))
            continue
        except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit int, or [[[[... nested too deep
            errors.append(ParseError(raw[:200], f"tool call is not valid JSON ({_short(exc)})"))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
            errors.append(ParseError(raw[:200], 'tool call needs {"name": "<tool>", "arguments": {...}}'))
            continue
        args = obj.get("arguments", {})
        if isinstance(args, str):  # some models emit arguments as a JSON string
            try:
                args = json.loads(args) if args.strip() else {}
            except (ValueError, RecursionError):  # JSONDecodeError, too-long ints, too deep nesting
                errors.append(ParseError(raw[:200], "tool call arguments string is not valid JSON"))
                continue
        if not isinstance(args, dict):
            errors.append(ParseError(raw[:200], "tool call arguments must be a JSON object"))
            continue
        calls.append(ToolCall(obj["name"], args))
    return calls, errors


def _short(exc: BaseException) -> str:
    """A one-line reason for a JSON value Python's decoder refuses (not a syntax error)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";")[0][:120]
