"""The chat-mode agent loop: any OpenAI-compatible ``/v1/chat/completions`` endpoint, with tools.

Why a second loop: ``loop.py`` is token-faithful (token ids in, token ids out) because RL must train on
exactly what the model sampled, and that needs a vLLM server. Evaluation has no such need, and the
models worth comparing against (hosted APIs, other serving stacks) only speak chat messages. This loop
sends messages plus OpenAI ``tools`` schemas and handles both ways a model may ask for a tool:

- ``native``: the response's ``message.tool_calls`` (OpenAI function calling). Results go back as
  ``role: tool`` messages with the call's id.
- Hermes text: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in the content
  (models served without a tool parser, or ``tool_mode="hermes"`` where the schemas are written into
  the system prompt instead of the ``tools`` field). Results go back as one user message of
  ``<tool_response>`` blocks, which is how Hermes/Qwen templates render tool turns, so it works on
  servers that reject ``role: tool`` without structured calls.

An episode ends on a final answer (``extract_answer`` with the configured convention, which the
system prompt explains), the turn limit, a token budget, a response cut off by ``max_tokens``, or an
endpoint failure; ``ChatEpisodeResult.stop_reason`` says which. Tool problems never end an episode:
an unknown tool, arguments that are not JSON, a failing or slow tool all become an ``Error: ...``
observation the model can react to, and are counted.

Nothing here logs message contents: questions, tool outputs and answers of a benchmark must not leak
into logs (GAIA's terms), so logs carry ids, counts and timings only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from aworld_core.agent.loop import ToolCallRecord
from aworld_core.agent.parsing import CLOSE, OPEN, parse_tool_calls
from aworld_core.errors import ConfigError, EndpointUnreachable
from aworld_core.evaluation.answer_extraction import CONVENTIONS, extract_answer
from aworld_core.evaluation.gaia_dataset import BenchmarkTask
from aworld_core.tools.base import Tool, ToolError

log = logging.getLogger(__name__)

__all__ = [
    "CHAT_STOP_REASONS",
    "ChatClient",
    "ChatEpisodeResult",
    "ChatLimits",
    "ChatResponse",
    "ChatTurnRecord",
    "ToolCallRecord",
    "build_system_prompt",
    "run_chat_episode",
]

#: Why an episode ended. ``answer``: a final answer was given; ``no_answer``: the model stopped
#: without calling a tool or marking an answer (after the configured nudges); ``max_turns``;
#: ``max_tokens``: a response was cut off by the per-turn limit; ``token_budget``: the episode's
#: prompt+completion tokens reached ``max_total_tokens``; ``error``: the endpoint failed.
CHAT_STOP_REASONS = ("answer", "no_answer", "max_turns", "max_tokens", "token_budget", "error")

# --------------------------------------------------------------------------------------------------
# The HTTP client.


class ChatRequestRejected(EndpointUnreachable):
    """The endpoint answered with a 4xx: retrying will not help (bad model name, context too long)."""


class _Retryable(Exception):
    """A failure the same endpoint may not have a moment later (connection error, 5xx, 429)."""


@dataclass
class ChatResponse:
    """One chat completion: the assistant message as sent, and what the endpoint reported about it."""

    message: dict[str, Any]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class ChatBackend(Protocol):
    """What the loop needs from a client; tests may pass any object with this method."""

    async def chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                   max_tokens: int, temperature: float, top_p: float,
                   seed: int | None = None) -> ChatResponse: ...


class ChatClient:
    """An async client for one OpenAI-compatible base URL (``http://host:8000/v1``).

    Connection errors, timeouts, 5xx and 429 are retried with exponential backoff (tenacity); after
    ``max_attempts`` the call raises ``EndpointUnreachable``. A 4xx raises ``ChatRequestRejected``
    at once with the server's message. The API key is read from the environment variable named by
    ``api_key_env`` and only ever placed in the ``Authorization`` header: it is not an attribute, not
    in ``repr`` and never logged.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None,
                 timeout_s: float = 300.0, max_attempts: int = 5, max_connections: int = 64,
                 retry_initial_s: float = 0.5, retry_max_s: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint {base_url!r} must start with http:// or https:// "
                              "(the OpenAI base URL, e.g. http://127.0.0.1:8000/v1)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ConfigError(f"environment variable {api_key_env} (named by api_key_env) is not set "
                                  "or empty; export the API key under that name")
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=10.0), headers=headers,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))
        self._max_attempts = max_attempts
        self._wait = wait_exponential_jitter(initial=retry_initial_s, max=retry_max_s)

    def __repr__(self) -> str:
        return f"ChatClient({self.base_url!r}, model={self.model!r})"

    async def __aenter__(self) -> "ChatClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                   max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                   seed: int | None = None) -> ChatResponse:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                "temperature": temperature, "top_p": top_p}
        if tools:
            body["tools"] = tools
        if seed is not None:
            body["seed"] = seed
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(self._max_attempts), wait=self._wait,
                                               retry=retry_if_exception_type(_Retryable), reraise=True):
                with attempt:
                    return await self._post(body)
        except _Retryable as exc:
            raise EndpointUnreachable(
                f"{self.base_url}/chat/completions did not answer after {self._max_attempts} attempts "
                f"(last error: {exc}); check the server is up (curl {self.base_url}/models)") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, body: dict[str, Any]) -> ChatResponse:
        t0 = time.perf_counter()
        try:
            resp = await self._http.post(f"{self.base_url}/chat/completions", json=body)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            log.warning("chat endpoint %s: %s; retrying", self.base_url, type(exc).__name__)
            raise _Retryable(type(exc).__name__) from None
        latency = time.perf_counter() - t0
        if resp.status_code >= 500 or resp.status_code == 429:
            log.warning("chat endpoint %s: HTTP %d; retrying", self.base_url, resp.status_code)
            raise _Retryable(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise ChatRequestRejected(f"{self.base_url}/chat/completions rejected the request: "
                                      f"HTTP {resp.status_code} {resp.text[:300]}")
        try:
            data = resp.json()
            choice = data["choices"][0]
            message = dict(choice.get("message") or {})
        except (ValueError, KeyError, IndexError, TypeError):
            raise ChatRequestRejected(f"{self.base_url}/chat/completions returned something that is not "
                                      f"a chat completion: {resp.text[:200]!r}") from None
        usage = data.get("usage") or {}
        return ChatResponse(message=message, finish_reason=choice.get("finish_reason") or "stop",
                            prompt_tokens=int(usage.get("prompt_tokens") or 0),
                            completion_tokens=int(usage.get("completion_tokens") or 0), latency_s=latency)

    async def list_models(self) -> list[str]:
        """Ids from ``GET {base_url}/models``; raises EndpointUnreachable when it cannot be read."""
        try:
            resp = await self._http.get(f"{self.base_url}/models", timeout=15.0)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise EndpointUnreachable(f"cannot reach {self.base_url}/models ({type(exc).__name__}); is the "
                                      "server up, and is the URL the OpenAI base URL (ending in /v1)?") from None
        if resp.status_code != 200:
            raise EndpointUnreachable(f"{self.base_url}/models answered HTTP {resp.status_code}; check the "
                                      "URL (the OpenAI base URL, ending in /v1) and the API key")
        try:
            return [str(m["id"]) for m in resp.json().get("data", []) if isinstance(m, dict) and "id" in m]
        except (ValueError, AttributeError):
            raise EndpointUnreachable(f"{self.base_url}/models did not return an OpenAI model list") from None


# --------------------------------------------------------------------------------------------------
# Limits, prompt and records.


class ChatLimits(BaseModel):
    """Limits and sampling of one chat episode (validated once; frozen so shards can share it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_turns: int = Field(20, ge=1, description="model calls per episode, nudges included")
    max_tokens_per_turn: int = Field(4096, ge=1, description="the request's max_tokens")
    max_total_tokens: int | None = Field(None, ge=1, description="prompt+completion summed over turns")
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(0, description="request seed = seed + sample index; None sends no seed")
    tool_timeout_s: float = Field(120.0, gt=0)
    max_observation_chars: int = Field(20_000, ge=100)
    answer_convention: str = Field("final_answer", description="one of answer_extraction.CONVENTIONS")
    tool_mode: Literal["native", "hermes"] = Field(
        "native", description="native: OpenAI tools field; hermes: schemas in the system prompt")
    nudges: int = Field(1, ge=0, description="times to ask for the final answer when the model stops without one")


_CONVENTION_INSTRUCTIONS = {
    "final_answer": ("Report your thoughts, and finish your answer with the following template: "
                     "FINAL ANSWER: [YOUR FINAL ANSWER]."),
    "answer_tag": ("Report your thoughts, and finish your answer with your final answer inside answer "
                   "tags: <answer>YOUR FINAL ANSWER</answer>."),
    "last_line": "Report your thoughts, and write your final answer alone on the last line of your reply.",
}
_ANSWER_FORMAT = (
    "YOUR FINAL ANSWER should be a number OR as few words as possible OR a comma separated list of "
    "numbers and/or strings. If you are asked for a number, don't use comma to write your number "
    "neither use units such as $ or percent sign unless specified otherwise. If you are asked for a "
    "string, don't use articles, neither abbreviations (e.g. for cities), and write the digits in plain "
    "text unless specified otherwise. If you are asked for a comma separated list, apply the above "
    "rules depending of whether the element to be put in the list is a number or a string.")
_NUDGE = {
    "final_answer": "You have not given a final answer. Reply now with: FINAL ANSWER: [YOUR FINAL ANSWER]",
    "answer_tag": "You have not given a final answer. Reply now with <answer>YOUR FINAL ANSWER</answer>.",
    "last_line": "You have not given a final answer. Reply now with the final answer alone on the last line.",
}


def build_system_prompt(convention: str, tools: list[Tool], tool_mode: str = "native") -> str:
    """GAIA's answer-format instructions for ``convention``, plus (hermes mode) the tool schemas."""
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown answer convention {convention!r}; valid: {', '.join(sorted(CONVENTIONS))}")
    parts = ["You are a general AI assistant. I will ask you a question. Use the tools you are given when "
             "they help: files attached to the question are in your working directory.",
             _CONVENTION_INSTRUCTIONS[convention], _ANSWER_FORMAT]
    if tool_mode == "hermes" and tools:
        schemas = "\n".join(json.dumps(t.schema(), ensure_ascii=False) for t in tools)
        parts.append("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                     f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
                     f"{schemas}\n</tools>\n\nFor each function call, return a json object with function name "
                     f"and arguments within {OPEN}{CLOSE} XML tags:\n{OPEN}\n"
                     '{"name": <function-name>, "arguments": <args-json-object>}\n' f"{CLOSE}")
    return "\n\n".join(parts)


def user_prompt(task: BenchmarkTask) -> str:
    """The question, plus where its attachment is (by file name, inside the working directory)."""
    if task.file_name:
        return (f"{task.question}\n\nAttached file: {task.file_name} (in your working directory; open it "
                f"with read_file, or from python_exec by that name)")
    return task.question


@dataclass
class ChatTurnRecord:
    """One model call."""

    turn_index: int
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    tool_calls: int
    call_format: str  # "native", "hermes" or "none"


@dataclass
class ChatEpisodeResult:
    """Everything one episode produced. No ground truth: scoring happens outside the loop."""

    task_id: str
    level: int
    messages: list[dict[str, Any]]
    turns: list[ChatTurnRecord]
    tool_calls: list[ToolCallRecord]
    answer: str | None
    stop_reason: str
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_s: float = 0.0
    tool_s: float = 0.0
    total_s: float = 0.0

    @property
    def tool_errors(self) -> int:
        return sum(1 for c in self.tool_calls if c.error is not None)

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict (the transcript line)."""
        out = asdict(self)
        out["tool_errors"] = self.tool_errors
        return out


# --------------------------------------------------------------------------------------------------
# The loop.


@dataclass
class _PendingCall:
    call_id: str
    name: str
    raw_arguments: str
    arguments: Any = None
    parse_error: str | None = None


@dataclass
class _Totals:
    prompt: int = 0
    completion: int = 0
    model_s: float = 0.0
    tool_s: float = 0.0
    records: list[ToolCallRecord] = field(default_factory=list)


async def run_chat_episode(client: ChatBackend, task: BenchmarkTask, tools: list[Tool], limits: ChatLimits,
                           sample_index: int = 0) -> ChatEpisodeResult:
    """Play one episode of ``task`` against ``client`` and return what happened (unscored)."""
    t_start = time.perf_counter()
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools] if limits.tool_mode == "native" and tools else None
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": build_system_prompt(limits.answer_convention, tools, limits.tool_mode)},
        {"role": "user", "content": user_prompt(task)},
    ]
    turns: list[ChatTurnRecord] = []
    totals = _Totals()
    answer: str | None = None
    stop, error = "max_turns", None
    nudges_left = limits.nudges
    seed = None if limits.seed is None else limits.seed + sample_index

    for turn_index in range(limits.max_turns):
        try:
            resp = await client.chat(messages, tools=schemas, max_tokens=limits.max_tokens_per_turn,
                                     temperature=limits.temperature, top_p=limits.top_p, seed=seed)
        except EndpointUnreachable as exc:
            stop, error = "error", str(exc)
            log.warning("task %s sample %d: endpoint failed at turn %d", task.task_id, sample_index, turn_index)
            break
        totals.prompt += resp.prompt_tokens
        totals.completion += resp.completion_tokens
        totals.model_s += resp.latency_s
        content = _content_text(resp.message.get("content"))
        calls, call_format = _pending_calls(resp.message, content, turn_index)
        turns.append(ChatTurnRecord(turn_index, resp.latency_s, resp.prompt_tokens, resp.completion_tokens,
                                    resp.finish_reason, len(calls), call_format))
        assistant: dict[str, Any] = {"role": "assistant", "content": content}
        if call_format == "native":
            assistant["content"] = content or None  # some APIs reject "" beside tool_calls
            assistant["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.raw_arguments}}
                for c in calls]
        messages.append(assistant)

        if not calls:
            answer = extract_answer(content, limits.answer_convention)
            if answer is not None:
                stop = "answer"
                break
            if resp.finish_reason == "length":
                stop = "max_tokens"
                break
            if nudges_left > 0 and turn_index + 1 < limits.max_turns:
                nudges_left -= 1
                messages.append({"role": "user", "content": _NUDGE[limits.answer_convention]})
                if _over_budget(totals, limits):
                    stop = "token_budget"
                    break
                continue
            stop = "no_answer"
            break

        t_tools = time.perf_counter()
        observations = await asyncio.gather(*(_execute(by_name, c, limits) for c in calls))
        totals.tool_s += time.perf_counter() - t_tools
        for call_index, (call, (result, err, latency)) in enumerate(zip(calls, observations)):
            totals.records.append(ToolCallRecord(turn_index, call_index, call.name, call.raw_arguments,
                                                 result, latency, err))
        texts = [result if err is None else f"Error: {err}" for result, err, _ in observations]
        if call_format == "native":
            messages += [{"role": "tool", "tool_call_id": c.call_id, "content": text}
                         for c, text in zip(calls, texts)]
        else:
            messages.append({"role": "user", "content": "\n".join(
                f"<tool_response>\n{text}\n</tool_response>" for text in texts)})
        if _over_budget(totals, limits):
            stop = "token_budget"
            break

    result = ChatEpisodeResult(task_id=task.task_id, level=task.level, messages=messages, turns=turns,
                               tool_calls=totals.records, answer=answer, stop_reason=stop, error=error,
                               prompt_tokens=totals.prompt, completion_tokens=totals.completion,
                               model_s=totals.model_s, tool_s=totals.tool_s,
                               total_s=time.perf_counter() - t_start)
    log.debug("task %s sample %d: stop=%s turns=%d tool_calls=%d tool_errors=%d", task.task_id, sample_index,
              stop, len(turns), len(totals.records), result.tool_errors)
    return result


def _over_budget(totals: _Totals, limits: ChatLimits) -> bool:
    return limits.max_total_tokens is not None and totals.prompt + totals.completion >= limits.max_total_tokens


def _content_text(content: Any) -> str:
    """Message content as text; some servers send a list of ``{"type": "text", "text": ...}`` parts."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def _pending_calls(message: dict[str, Any], content: str, turn_index: int) -> tuple[list[_PendingCall], str]:
    """The calls a response asks for: structured ``tool_calls`` first, else Hermes blocks in the text."""
    structured = message.get("tool_calls") or []
    if structured:
        calls = []
        for i, raw in enumerate(structured):
            raw = raw if isinstance(raw, dict) else {}
            fn = raw.get("function") if isinstance(raw.get("function"), dict) else {}
            call_id = str(raw.get("id") or f"call_{turn_index}_{i}")
            args_raw = fn.get("arguments")
            call = _PendingCall(call_id, str(fn.get("name") or ""),
                                args_raw if isinstance(args_raw, str) else json.dumps(args_raw))
            if isinstance(args_raw, dict):
                call.arguments = args_raw
            elif not isinstance(args_raw, str) or not args_raw.strip():
                call.arguments = {}
            else:
                try:
                    call.arguments = json.loads(args_raw)
                except json.JSONDecodeError as exc:
                    call.parse_error = (f"arguments of {call.name or 'the call'} are not valid JSON ({exc.msg} at "
                                        f"char {exc.pos}); send a JSON object")
                except (ValueError, RecursionError):  # a 5000-digit int, or [[[[... nested too deep
                    call.parse_error = (f"arguments of {call.name or 'the call'} are not valid JSON (a number too "
                                        f"long or nesting too deep); send a JSON object")
            if not call.name:
                call.parse_error = "tool call without a function name"
            calls.append(call)
        return calls, "native"
    if OPEN not in content:
        return [], "none"
    parsed, errors = parse_tool_calls(content)
    calls = [_PendingCall(f"call_{turn_index}_{i}", c.name, c.arguments_json(), c.arguments)
             for i, c in enumerate(parsed)]
    calls += [_PendingCall(f"call_{turn_index}_{len(parsed) + j}", "", e.raw, None, e.message)
              for j, e in enumerate(errors)]
    return calls, "hermes"


async def _execute(tools: dict[str, Tool], call: _PendingCall, limits: ChatLimits) -> tuple[str, str | None, float]:
    """Run one call: (observation, error or None, seconds). Never raises."""
    t0 = time.perf_counter()
    if call.parse_error is not None:
        return "", call.parse_error, 0.0
    tool = tools.get(call.name)
    if tool is None:
        return "", f"unknown tool {call.name!r}; available tools: {', '.join(sorted(tools)) or 'none'}", 0.0
    try:
        args = tool.validate(call.arguments)
        result = await asyncio.wait_for(tool.run(**args), timeout=limits.tool_timeout_s)
    except asyncio.TimeoutError:
        return "", f"{call.name} timed out after {limits.tool_timeout_s:g} s", time.perf_counter() - t0
    except ToolError as exc:
        return "", str(exc), time.perf_counter() - t0
    except Exception as exc:  # a crashing tool is an observation, never a lost episode
        return "", f"{call.name} failed: {type(exc).__name__}: {exc}", time.perf_counter() - t0
    result = str(result)
    cap = limits.max_observation_chars
    if len(result) > cap:
        result = result[:cap] + f"\n[... truncated: {len(result) - cap} more characters ...]"
    return result, None, time.perf_counter() - t0
