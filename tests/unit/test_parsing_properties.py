"""Properties of the Hermes tool-call parser over untrusted model output.

Whatever the model writes, ``parse_tool_calls`` returns (calls, errors) and never raises; every block
becomes exactly one call or one error (up to the cap, then one "too many" error); well-formed calls
rendered the way our chat template renders them come back with the same name and arguments.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aworld_core.agent.parsing import CLOSE, MAX_CALLS_PER_TURN, OPEN, ParseError, ToolCall, parse_tool_calls

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- strategies

# Tool names as the chat template writes them ('"name": "' + fn.name + '"'): no quotes or backslashes.
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True)
# Any text that cannot end a block early (json.dumps does not escape '<' or '/').
SAFE_TEXT = st.text(max_size=40).filter(lambda s: OPEN not in s and CLOSE not in s)
JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | SAFE_TEXT)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(SAFE_TEXT, kids, max_size=4),
    max_leaves=12)
ARGUMENTS = st.dictionaries(SAFE_TEXT, JSON_VALUES, max_size=5)

# Pieces that, glued together at random, make nested, unbalanced and half-JSON tool-call soup.
FRAGMENTS = st.sampled_from([
    OPEN, CLOSE, OPEN, CLOSE, "<tool_call", "tool_call>", "</tool_", "{", "}", "[", "]", '"', ":", ",",
    '"name"', '"arguments"', '"calculator"', '{"name": "a", "arguments": {}}', '"{\\"x\\": 1}"', "\\",
    "null", "1e999", "-", "NaN", "Infinity", " ", "\n", "\x00", "\ud800", "é", "🙂", "1" * 5000, "[" * 3000,
    "<answer>", "</answer>",
])
SOUP = st.lists(FRAGMENTS | st.text(max_size=8), max_size=40).map("".join)


def render_template(name: str, args: dict, *, args_as_string: bool = False) -> str:
    """A call exactly as aworld_core/model/chat_template.jinja writes one (tojson or a JSON string)."""
    body = json.dumps(args, ensure_ascii=False)
    if args_as_string:
        body = json.dumps(body, ensure_ascii=False)
    return OPEN + '{"name": "' + name + '", "arguments": ' + body + "}" + CLOSE


def check_shape(calls: list, errors: list) -> None:
    """What every result looks like, whatever the input."""
    assert isinstance(calls, list) and isinstance(errors, list)
    assert len(calls) + len(errors) <= MAX_CALLS_PER_TURN + 1
    for c in calls:
        assert isinstance(c, ToolCall) and isinstance(c.name, str) and c.name
        assert isinstance(c.arguments, dict)
        json.loads(c.arguments_json())  # what the loop stores must be valid JSON again
    for e in errors:
        assert isinstance(e, ParseError) and isinstance(e.message, str) and e.message.strip()
        assert isinstance(e.raw, str) and len(e.raw) <= 200


# ---------------------------------------------------------------- never raises

@FAST
@given(st.text(max_size=300))
def test_never_raises_on_any_unicode(text):
    check_shape(*parse_tool_calls(text))


@FAST
@given(SOUP)
@example(OPEN + "[" * 100_000 + CLOSE)                                     # RecursionError in json
@example(OPEN + "1" * 5000 + CLOSE)                                        # int too long for int()
@example(OPEN + '{"name": "a", "arguments": "' + "[" * 100_000 + '"}' + CLOSE)
@example(OPEN + '{"name": "a", "arguments": {"x": ' + "9" * 5000 + "}}" + CLOSE)
@example(OPEN * 10_000)
@example((OPEN + CLOSE) * 10_000)
@example(OPEN + OPEN + '{"name": "a", "arguments": {}}' + CLOSE + CLOSE)
def test_never_raises_on_tag_and_json_soup(text):
    check_shape(*parse_tool_calls(text))


@FAST
@given(st.text(max_size=300).filter(lambda s: OPEN not in s))
def test_text_without_an_open_tag_has_no_calls_and_no_errors(text):
    assert parse_tool_calls(text) == ([], [])


def test_huge_inputs_are_handled_quickly():
    big_call = OPEN + json.dumps({"name": "a", "arguments": {"s": "x" * 2_000_000}}) + CLOSE
    calls, errors = parse_tool_calls(big_call)
    assert len(calls) == 1 and errors == [] and len(calls[0].arguments["s"]) == 2_000_000
    for text in ["y" * 5_000_000, OPEN + "z" * 5_000_000, (OPEN + "{" + CLOSE) * 200_000]:
        check_shape(*parse_tool_calls(text))


# ---------------------------------------------------------------- round trip

@FAST
@given(NAMES, ARGUMENTS, st.booleans())
def test_template_rendered_call_round_trips(name, args, args_as_string):
    calls, errors = parse_tool_calls(render_template(name, args, args_as_string=args_as_string))
    assert errors == [] and len(calls) == 1
    assert calls[0].name == name and calls[0].arguments == args
    assert json.loads(calls[0].arguments_json()) == args


@FAST
@given(SAFE_TEXT.filter(lambda s: s.strip()), ARGUMENTS, st.sampled_from(["", " ", "\n", "\n  "]))
def test_json_dumped_call_round_trips_with_any_name_and_padding(name, args, pad):
    text = OPEN + pad + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + pad + CLOSE
    calls, errors = parse_tool_calls(text)
    assert errors == [] and [(c.name, c.arguments) for c in calls] == [(name, args)]


# ---------------------------------------------------------------- every block is accounted for

BAD_BODIES = st.one_of(
    SAFE_TEXT.map(lambda s: "x" + s),                                  # not JSON at all
    st.builds(lambda a: json.dumps({"name": "a", "arguments": a})[:-1], ARGUMENTS),  # truncated JSON
    (st.lists(JSON_SCALARS, max_size=3) | JSON_SCALARS).map(json.dumps),  # JSON, but not an object
    ARGUMENTS.map(lambda a: json.dumps({"arguments": a})),             # no name
    ARGUMENTS.map(lambda a: json.dumps({"name": "", "arguments": a})),  # empty name
    st.builds(lambda n, a: json.dumps({"name": n, "arguments": a}),
              st.integers() | st.none() | st.lists(st.integers(), max_size=2), ARGUMENTS),  # name not a string
    st.builds(lambda n, a: json.dumps({"name": n, "arguments": a}), NAMES,
              st.lists(JSON_SCALARS, max_size=3) | st.integers() | st.booleans()),  # arguments not an object
    st.builds(lambda n, s: json.dumps({"name": n, "arguments": "x" + s}), NAMES, SAFE_TEXT),  # bad arg string
)
GOOD = st.tuples(st.just("good"), NAMES, ARGUMENTS)
BAD = st.tuples(st.just("bad"), BAD_BODIES)
FILLER = st.text(max_size=10).filter(lambda s: OPEN not in s and CLOSE not in s)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GOOD | BAD, max_size=MAX_CALLS_PER_TURN), FILLER, st.booleans())
def test_each_block_is_one_call_or_one_error(blocks, filler, last_unclosed):
    text, expected_calls, expected_raws = filler, [], []
    for i, block in enumerate(blocks):
        body = render_template(block[1], block[2]) if block[0] == "good" else OPEN + block[1] + CLOSE
        if last_unclosed and i == len(blocks) - 1:
            body = body[: -len(CLOSE)]  # an unclosed final block is an error, even if its JSON is fine
            expected_raws.append((body[len(OPEN):] + filler).strip()[:200])  # it runs to the end of the text
        elif block[0] == "good":
            expected_calls.append((block[1], block[2]))
        else:
            expected_raws.append(block[1].strip()[:200])
        text += body + filler
    calls, errors = parse_tool_calls(text)
    check_shape(calls, errors)
    assert [(c.name, c.arguments) for c in calls] == expected_calls
    assert [e.raw for e in errors] == expected_raws  # none dropped, in order
    if last_unclosed and blocks:
        assert "not closed" in errors[-1].message


# Cheap blocks for the cap: what they hold is covered above, here only their number and kind matter.
SMALL_BLOCKS = st.lists(st.booleans(), min_size=MAX_CALLS_PER_TURN + 1, max_size=3 * MAX_CALLS_PER_TURN)


@settings(max_examples=60, deadline=None)
@given(SMALL_BLOCKS, st.sampled_from(["x", "[1]", '{"name": ""}', '{"name": "a", "arguments": 1}']))
def test_too_many_blocks_are_capped_with_one_error(good_flags, bad_body):
    blocks = [("good", "t", {"i": i}) if g else ("bad", bad_body) for i, g in enumerate(good_flags)]
    text = "".join(render_template(b[1], b[2]) if b[0] == "good" else OPEN + b[1] + CLOSE for b in blocks)
    calls, errors = parse_tool_calls(text)
    assert len(calls) + len(errors) == MAX_CALLS_PER_TURN + 1
    assert f"more than {MAX_CALLS_PER_TURN}" in errors[-1].message
    assert len(calls) == sum(1 for b in blocks[:MAX_CALLS_PER_TURN] if b[0] == "good")


@FAST
@given(BAD_BODIES)
def test_malformed_block_is_an_error_with_a_message(body):
    calls, errors = parse_tool_calls("I will call a tool. " + OPEN + body + CLOSE)
    assert calls == [] and len(errors) == 1
    assert errors[0].raw == body.strip()[:200]
    assert any(k in errors[0].message for k in ("JSON", '"name"', "arguments"))


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=4))
def test_json_the_decoder_refuses_is_an_error_not_an_exception(k):
    """Python's json raises ValueError (not JSONDecodeError) for >4300-digit ints, RecursionError when deep."""
    for body in ["7" * (4300 * k + 1), "[" * (50_000 * k) + "]" * (50_000 * k),
                 json.dumps({"name": "a", "arguments": {"n": 0}}).replace("0", "1" * (4300 * k + 1)),
                 json.dumps({"name": "a", "arguments": "[" * (50_000 * k)})]:
        calls, errors = parse_tool_calls(OPEN + body + CLOSE)
        assert calls == [] and len(errors) == 1 and "JSON" in errors[0].message
