"""The chat-mode agent loop and its HTTP client, against the scripted loopback policy server."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from aworld_core.agent.chat_loop import (
    ChatClient,
    ChatEpisodeResult,
    ChatLimits,
    ChatRequestRejected,
    build_system_prompt,
    run_chat_episode,
)
from aworld_core.errors import ConfigError, EndpointUnreachable
from aworld_core.evaluation.gaia_dataset import BenchmarkTask
from aworld_core.tools.base import Tool, ToolError

from testkit import load_scripted_policy


def _servers() -> ModuleType:
    return load_scripted_policy()


sp = _servers()
call, answer, tools_step, Step = sp.call, sp.answer, sp.tools, sp.Step

TASK = BenchmarkTask(task_id="t-1", question="MARK-1: what is the code word?", level=2)


class Echo(Tool):
    name = "echo"
    description = "echo text back"
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

    async def run(self, **arguments: Any) -> str:
        return f"echo: {arguments['text']}"


class Slow(Tool):
    name = "slow"
    description = "never finishes in time"
    parameters = {"type": "object", "properties": {}}

    async def run(self, **arguments: Any) -> str:
        await asyncio.sleep(5)
        return "late"


class Crash(Tool):
    name = "crash"
    description = "raises"
    parameters = {"type": "object", "properties": {}}

    async def run(self, **arguments: Any) -> str:
        raise RuntimeError("boom")


class Refuse(Tool):
    name = "refuse"
    description = "raises a ToolError"
    parameters = {"type": "object", "properties": {}}

    async def run(self, **arguments: Any) -> str:
        raise ToolError("not today")


class Big(Tool):
    name = "big"
    description = "returns a lot"
    parameters = {"type": "object", "properties": {}}

    async def run(self, **arguments: Any) -> str:
        return "x" * 5000


TOOLS: list[Tool] = [Echo(), Slow(), Crash(), Refuse(), Big()]


def episode(script: list[Step], limits: ChatLimits | None = None, tools: list[Tool] | None = None,
            task: BenchmarkTask = TASK, **server_kw: Any) -> tuple[ChatEpisodeResult, Any]:
    marker = task.question.split(":")[0]
    with sp.ScriptedPolicyServer({marker: [script]}, **server_kw) as server:

        async def go() -> ChatEpisodeResult:
            async with ChatClient(server.base_url, "scripted", max_attempts=3, retry_initial_s=0.01,
                                  retry_max_s=0.05) as client:
                return await run_chat_episode(client, task, TOOLS if tools is None else tools,
                                              limits or ChatLimits(tool_timeout_s=0.5))

        return asyncio.run(go()), server


def test_native_tool_call_result_goes_back_with_its_id_then_answer() -> None:
    result, server = episode([tools_step(call("echo", text="swordfish")), answer("swordfish", require="echo: swordfish")])
    assert result.stop_reason == "answer" and result.answer == "swordfish" and result.error is None
    assert len(result.turns) == 2 and result.turns[0].call_format == "native" and result.turns[0].tool_calls == 1
    second = server.requests[1]["messages"]
    assert second[2]["tool_calls"][0]["id"] == "call_0_0"
    assert second[3] == {"role": "tool", "tool_call_id": "call_0_0", "content": "echo: swordfish"}
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["echo", "slow", "crash", "refuse", "big"]
    # usage: 10 per message sent (2, then 4), 7 completion tokens per response
    assert (result.prompt_tokens, result.completion_tokens) == (60, 14)
    assert result.tool_calls[0].name == "echo" and json.loads(result.tool_calls[0].arguments) == {"text": "swordfish"}
    assert all(t.latency_s >= 0 for t in result.turns) and result.total_s >= result.model_s


def test_hermes_text_tool_calls_are_parsed_and_answered_as_tool_responses() -> None:
    result, server = episode([tools_step(call("echo", text="owl"), hermes=True, content="Let me check."),
                              answer("owl", require="echo: owl")])
    assert result.stop_reason == "answer" and result.answer == "owl"
    assert result.turns[0].call_format == "hermes"
    msgs = server.requests[1]["messages"]
    assert "tool_calls" not in msgs[2] and "<tool_call>" in msgs[2]["content"]
    assert msgs[3] == {"role": "user", "content": "<tool_response>\necho: owl\n</tool_response>"}


def test_malformed_hermes_block_is_an_error_observation() -> None:
    script = [Step(content='<tool_call>{"name": "echo", "arguments": {oops}}</tool_call>'), answer("x")]
    result, server = episode(script)
    assert result.tool_errors == 1 and "not valid JSON" in result.tool_calls[0].error
    assert server.requests[1]["messages"][3]["content"].startswith("<tool_response>\nError: tool call is not valid JSON")


@pytest.mark.parametrize("bad_call, error_part", [
    (("nonexistent", "{}"), "unknown tool 'nonexistent'; available tools: big, crash, echo, refuse, slow"),
    (("echo", '{"text": "unterminated'), "arguments of echo are not valid JSON"),
    (("echo", "[1, 2]"), "arguments for echo must be a JSON object"),
    (("echo", "{}"), "echo needs argument 'text'"),
    (("echo", '{"text": 5}'), "argument 'text' of echo must be string"),
    (("slow", "{}"), "slow timed out after 0.5 s"),
    (("crash", "{}"), "crash failed: RuntimeError: boom"),
    (("refuse", "{}"), "not today"),
])
def test_tool_problems_become_error_messages_and_the_episode_goes_on(bad_call: tuple[str, str], error_part: str) -> None:
    result, server = episode([tools_step(bad_call), answer("done")])
    assert result.stop_reason == "answer" and result.answer == "done"
    assert result.tool_errors == 1 and error_part in result.tool_calls[0].error
    tool_msg = server.requests[1]["messages"][3]
    assert tool_msg["role"] == "tool" and tool_msg["content"] == f"Error: {result.tool_calls[0].error}"


def test_several_calls_in_one_turn_run_concurrently_in_order() -> None:
    result, server = episode([tools_step(call("slow"), call("echo", text="a"), call("echo", text="b")), answer("ok")],
                             limits=ChatLimits(tool_timeout_s=0.3))
    assert [c.call_index for c in result.tool_calls] == [0, 1, 2]
    contents = [m["content"] for m in server.requests[1]["messages"][3:]]
    assert contents == ["Error: slow timed out after 0.3 s", "echo: a", "echo: b"]
    assert result.tool_s < 1.0


def test_long_observations_are_truncated() -> None:
    result, server = episode([tools_step(call("big")), answer("ok")], limits=ChatLimits(max_observation_chars=100))
    content = server.requests[1]["messages"][3]["content"]
    assert content.startswith("x" * 100) and "[... truncated: 4900 more characters ...]" in content


def test_turn_limit() -> None:
    result, server = episode([tools_step(call("echo", text="again"))], limits=ChatLimits(max_turns=3))
    assert result.stop_reason == "max_turns" and result.answer is None
    assert len(result.turns) == 3 and len(server.requests) == 3


def test_token_budget() -> None:
    # each request costs 10 per message + 7: 27, then 47 -> 74 >= 60 after the second turn
    result, _ = episode([tools_step(call("echo", text="again"))], limits=ChatLimits(max_total_tokens=60))
    assert result.stop_reason == "token_budget" and len(result.turns) == 2


def test_cut_off_response_without_answer_stops_with_max_tokens() -> None:
    result, _ = episode([Step(content="Let me think about this at great length and", finish_reason="length")])
    assert result.stop_reason == "max_tokens" and result.answer is None


def test_no_answer_gets_one_nudge_then_stops() -> None:
    result, server = episode([Step(content="I think it is blue.")])
    assert result.stop_reason == "no_answer" and len(result.turns) == 2
    assert server.requests[1]["messages"][-1] == {
        "role": "user", "content": "You have not given a final answer. Reply now with: FINAL ANSWER: [YOUR FINAL ANSWER]"}


def test_nudge_leads_to_an_answer() -> None:
    result, _ = episode([Step(content="It is blue."), answer("blue")])
    assert result.stop_reason == "answer" and result.answer == "blue"


def test_answer_tag_convention_and_hermes_tool_mode() -> None:
    limits = ChatLimits(answer_convention="answer_tag", tool_mode="hermes")
    result, server = episode([tools_step(call("echo", text="z"), hermes=True),
                              answer("zed", require="echo: z", convention="answer_tag")], limits=limits)
    assert result.answer == "zed" and result.stop_reason == "answer"
    first = server.requests[0]
    assert "tools" not in first
    system = first["messages"][0]["content"]
    assert "<answer>YOUR FINAL ANSWER</answer>" in system and '"name": "echo"' in system and "<tool_call>" in system


def test_final_answer_marker_is_ignored_in_other_conventions() -> None:
    result, _ = episode([Step(content="FINAL ANSWER: 3")], limits=ChatLimits(answer_convention="answer_tag", nudges=0))
    assert result.stop_reason == "no_answer" and result.answer is None


def test_system_prompt_names_the_convention_and_rejects_unknown_ones() -> None:
    assert "FINAL ANSWER: [YOUR FINAL ANSWER]" in build_system_prompt("final_answer", [])
    assert "last line" in build_system_prompt("last_line", [])
    with pytest.raises(ConfigError, match="unknown answer convention"):
        build_system_prompt("shout", [])


def test_attachment_is_named_in_the_user_message() -> None:
    task = BenchmarkTask(task_id="t-2", question="MARK-2: sum it", level=1, file_name="data.csv")
    _, server = episode([answer("1")], task=task)
    assert server.requests[0]["messages"][1]["content"].endswith(
        "Attached file: data.csv (in your working directory; open it with read_file, or from python_exec by that name)")


def test_seed_is_sample_based() -> None:
    with sp.ScriptedPolicyServer({"MARK-1": [[answer("a")], [answer("b")]]}) as server:

        async def go(sample: int) -> ChatEpisodeResult:
            async with ChatClient(server.base_url, "scripted") as client:
                return await run_chat_episode(client, TASK, [], ChatLimits(seed=10), sample_index=sample)

        assert [asyncio.run(go(s)).answer for s in (0, 1)] == ["a", "b"]  # seeds 10, 11
        assert [r["seed"] for r in server.requests] == [10, 11]


# --- the HTTP client ----------------------------------------------------------------------------


def test_5xx_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result, server = episode([answer("ok")], fail_first={"MARK-1": 2})
    assert result.stop_reason == "answer" and server.failures_sent == 2 and len(server.requests) == 3
    assert "HTTP 503; retrying" in caplog.text


def test_endpoint_down_ends_the_episode_with_an_error() -> None:
    result, _ = episode([answer("ok")], fail_first={"MARK-1": 10})
    assert result.stop_reason == "error" and "did not answer after 3 attempts" in (result.error or "")


def test_4xx_is_not_retried() -> None:
    task = BenchmarkTask(task_id="t-3", question="UNSCRIPTED question", level=1)
    with sp.ScriptedPolicyServer({"MARK-1": [[answer("x")]]}) as server:

        async def go() -> ChatEpisodeResult:
            async with ChatClient(server.base_url, "scripted") as client:
                return await run_chat_episode(client, task, [], ChatLimits())

        result = asyncio.run(go())
    assert result.stop_reason == "error" and "HTTP 400" in (result.error or "") and len(server.requests) == 1


def test_api_key_comes_from_the_named_env_var_and_is_never_shown(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MY_TEST_KEY", "sk-very-secret")
    with sp.ScriptedPolicyServer({"MARK-1": [[answer("ok")]]}, api_key="sk-very-secret") as server:

        async def go(env: str | None) -> Any:
            async with ChatClient(server.base_url, "scripted", api_key_env=env) as client:
                assert "sk-very-secret" not in repr(client) and "sk-very-secret" not in str(vars(client))
                models = await client.list_models()
                return models, await run_chat_episode(client, TASK, [], ChatLimits())

        with caplog.at_level(logging.DEBUG):
            models, result = asyncio.run(go("MY_TEST_KEY"))
        assert models == ["scripted"] and result.answer == "ok"
        with pytest.raises(EndpointUnreachable, match="HTTP 401"):
            asyncio.run(go(None))
    assert "sk-very-secret" not in caplog.text
    monkeypatch.delenv("MY_TEST_KEY")
    with pytest.raises(ConfigError, match="MY_TEST_KEY"):
        ChatClient("http://127.0.0.1:1/v1", "m", api_key_env="MY_TEST_KEY")


def test_unreachable_endpoint_and_bad_urls() -> None:
    async def go() -> None:
        async with ChatClient("http://127.0.0.1:9/v1", "m", max_attempts=2, retry_initial_s=0.01) as client:
            await client.list_models()

    with pytest.raises(EndpointUnreachable, match="cannot reach http://127.0.0.1:9/v1/models"):
        asyncio.run(go())
    with pytest.raises(ConfigError, match="must start with http"):
        ChatClient("127.0.0.1:8000/v1", "m")


def test_rejected_is_an_endpoint_error() -> None:
    assert issubclass(ChatRequestRejected, EndpointUnreachable)
