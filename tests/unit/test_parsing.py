"""Tool-call parsing: valid calls, and every malformed shape becomes an error, never an exception."""

import pytest

from aworld_core.agent.parsing import MAX_CALLS_PER_TURN, parse_tool_calls


def test_single_call():
    calls, errs = parse_tool_calls('<tool_call>{"name": "calculator", "arguments": {"expression": "1+2"}}</tool_call>')
    assert errs == [] and len(calls) == 1
    assert calls[0].name == "calculator" and calls[0].arguments == {"expression": "1+2"}


def test_multiple_calls_with_whitespace_and_text():
    text = 'ok <tool_call>\n{"name": "a", "arguments": {}}\n</tool_call> and <tool_call>{"name":"b","arguments":{"x":1}}</tool_call>'
    calls, errs = parse_tool_calls(text)
    assert [c.name for c in calls] == ["a", "b"] and errs == []


def test_arguments_as_json_string():
    calls, errs = parse_tool_calls('<tool_call>{"name": "a", "arguments": "{\\"x\\": 2}"}</tool_call>')
    assert calls[0].arguments == {"x": 2} and not errs


def test_no_call():
    assert parse_tool_calls("<answer>3</answer>") == ([], [])


@pytest.mark.parametrize("text, fragment", [
    ('<tool_call>{"name": "a", "arguments": {</tool_call>', "not valid JSON"),
    ('<tool_call>{"arguments": {}}</tool_call>', '"name"'),
    ('<tool_call>{"name": "", "arguments": {}}</tool_call>', '"name"'),
    ('<tool_call>[1, 2]</tool_call>', '"name"'),
    ('<tool_call>{"name": "a", "arguments": [1]}</tool_call>', "JSON object"),
    ('<tool_call>{"name": "a", "arguments": "{bad"}</tool_call>', "arguments string"),
    ('<tool_call>{"name": "a", "arguments": {}}', "not closed"),
])
def test_malformed(text, fragment):
    calls, errs = parse_tool_calls(text)
    assert calls == [] and len(errs) == 1 and fragment in errs[0].message


def test_too_many_calls_is_bounded():
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call>' * (MAX_CALLS_PER_TURN + 5)
    calls, errs = parse_tool_calls(text)
    assert len(calls) == MAX_CALLS_PER_TURN and len(errs) == 1
