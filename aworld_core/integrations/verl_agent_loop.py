"""Our environments and tools as a verl agent loop, for RL on a verl GPU cluster (``main_ppo``).

verl's supported way to RL-train multi-turn tool use is its agent loop
(``verl/experimental/agent_loop``): for every row of the RL dataset, verl instantiates the loop named
in the row's ``agent_name`` column and awaits ``run(sampling_params, **row)``; the loop talks to
verl's own vLLM/SGLang servers through ``server_manager.generate(request_id, prompt_ids=...,
sampling_params=...)`` (token ids in, token ids and log-probs out) and returns an
``AgentLoopOutput``.

:class:`AWorldToolAgentLoop` (registered as ``aworld_tool_agent``) plays the row with exactly the
episode logic of our own rollouts, :func:`aworld_core.agent.loop.run_episode`: the environment named
in ``extra_info`` (rebuilt from its name, seed and parameters), its tools (``aworld_core.tools``,
executed concurrently, errors fed back as observations), Hermes tool-call parsing
(:func:`aworld_core.agent.parsing.parse_tool_calls`), the environment's verifier for the reward. Only
the policy differs: :class:`VerlServerPolicy` adapts verl's server manager to the ``complete()``
call the loop makes. Tokens are concatenated, never re-rendered: prompt ids, then each turn's sampled
ids (mask 1, with their log-probs), then each tool observation's template ids (mask 0).

Rows come from ``aworld export verl`` (``rl.parquet``). Launch: docs/verl.md, with
``actor_rollout_ref.rollout.agent.agent_loop_config_path=configs/verl_agent_loop.yaml``.
"""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register

from aworld_core.agent.loop import ChatTokens, LoopLimits, run_episode
from aworld_core.envs.base import Environment, Task, build_env
from aworld_core.errors import EndpointUnreachable
from aworld_core.inference.client import Completion

log = logging.getLogger(__name__)

AGENT_NAME = "aworld_tool_agent"
DEFAULT_MAX_TURNS = 4


class VerlServerPolicy:
    """The ``PolicyClient.complete`` interface on top of verl's ``server_manager.generate``.

    One request id per episode, so verl's sticky routing keeps every turn of an episode on one server
    (prefix cache hits). ``sampling_params`` from verl (temperature, top_p, logprobs, ...) are passed
    through; ``max_tokens`` and ``stop_token_ids`` come from the loop's per-turn budget.
    """

    def __init__(self, server_manager: Any, sampling_params: dict[str, Any], request_id: str | None = None) -> None:
        self.server = server_manager
        self.base = dict(sampling_params)
        self.request_id = request_id or uuid4().hex
        self.saw_logprobs = False

    async def complete(self, prompt_ids: list[int], *, max_tokens: int, temperature: float = 1.0,
                       top_p: float = 1.0, stop_token_ids: list[int] | None = None,
                       seed: int | None = None) -> Completion:
        stops = sorted(set(self.base.get("stop_token_ids") or []) | set(stop_token_ids or []))
        params = {**self.base, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                  "stop_token_ids": stops}
        t0 = time.perf_counter()
        try:
            out = await self.server.generate(request_id=self.request_id, prompt_ids=list(prompt_ids),
                                             sampling_params=params)
        except Exception as exc:  # the loop ends the episode with stop_reason "error"
            raise EndpointUnreachable(f"verl server manager failed: {type(exc).__name__}: {exc}") from exc
        if getattr(out, "stop_reason", None) == "aborted":
            raise EndpointUnreachable("verl aborted the request (weights being updated?)")
        ids = list(out.token_ids)
        if out.log_probs:
            self.saw_logprobs = True
            lps = [float(x) for x in out.log_probs]
        else:
            lps = [0.0] * len(ids)
        truncated = len(ids) >= max_tokens and (not ids or ids[-1] not in stops)
        return Completion(token_ids=ids, logprobs=lps, text="", finish_reason="length" if truncated else "stop",
                          latency_s=time.perf_counter() - t0, endpoint="verl")


@lru_cache(maxsize=32)
def _env(name: str, seed: int, params_json: str) -> Environment:
    return build_env(name, seed=seed, **json.loads(params_json or "{}"))


def env_from_extra_info(info: dict[str, Any]) -> Environment:
    """The environment a row's ``extra_info`` names (``aworld export verl`` writes these keys)."""
    try:
        return _env(info["environment"], int(info["env_seed"]), info.get("env_params") or "{}")
    except KeyError as exc:
        raise ValueError(f"extra_info lacks {exc}; rows for {AGENT_NAME} come from `aworld export verl`") from None


def task_from_row(info: dict[str, Any], reward_model: dict[str, Any] | None) -> Task:
    """The task (with its ground truth) of one RL row."""
    meta = json.loads(info.get("task_meta") or "{}")
    answer = (reward_model or {}).get("ground_truth")
    if answer is None:
        raise ValueError(f"row {info.get('task_id')!r} has no reward_model.ground_truth")
    return Task(task_id=info["task_id"], question=info["question"], answer=str(answer),
                split=info.get("split", "train"), meta=meta)


@register(AGENT_NAME)
class AWorldToolAgentLoop(AgentLoopBase):
    """verl agent loop running an aworld environment with its tools, token-faithfully."""

    def __init__(self, *args: Any, tools: Any = None, **kwargs: Any) -> None:
        # ``tools`` are verl's tool objects (rollout.multi_turn.tool_config_path); ours come from the
        # environment, so verl's list is ignored.
        super().__init__(*args, **kwargs)
        self.prompt_length = self.rollout_config.prompt_length
        self.response_length = self.rollout_config.response_length
        multi_turn = self.rollout_config.get("multi_turn", None) or {}
        self.max_assistant_turns = multi_turn.get("max_assistant_turns", None)
        self.chat = ChatTokens(self.tokenizer)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        info = dict(kwargs.get("extra_info") or {})
        env = env_from_extra_info(info)
        task = task_from_row(info, kwargs.get("reward_model"))
        tools = env.tools()
        prompt = self.chat.prompt_ids([{"role": "system", "content": env.system_prompt()},
                                       {"role": "user", "content": task.question}], [t.schema() for t in tools])
        if len(prompt) > self.prompt_length:
            raise ValueError(f"prompt of task {task.task_id} has {len(prompt)} tokens > rollout.prompt_length="
                             f"{self.prompt_length}; raise data.max_prompt_length")
        max_turns = int(self.max_assistant_turns or info.get("max_turns") or DEFAULT_MAX_TURNS)
        limits = LoopLimits(max_turns=max_turns, max_new_tokens=self.response_length,
                            max_total_tokens=len(prompt) + self.response_length,
                            temperature=float(sampling_params.get("temperature", 1.0)),
                            top_p=float(sampling_params.get("top_p", 1.0)))
        policy = VerlServerPolicy(self.server_manager, sampling_params)
        result = await run_episode(policy, self.chat, env, task, tools, limits)
        p = len(result.prompt_ids)
        R = self.response_length
        response_ids, mask, lps = result.token_ids[p:][:R], result.loss_mask[p:][:R], result.logprobs[p:][:R]
        tool_turns = sum(1 for m in result.messages if m["role"] == "tool")
        return AgentLoopOutput(
            prompt_ids=result.prompt_ids, response_ids=response_ids, response_mask=mask,
            response_logprobs=lps if policy.saw_logprobs else None, reward_score=float(result.reward),
            num_turns=1 + len(result.turns) + tool_turns,
            metrics=AgentLoopMetrics(generate_sequences=result.model_s, tool_calls=result.tool_s),
            extra_fields={"turn_scores": [], "tool_rewards": [], "stop_reason": result.stop_reason,
                          "reward_extra_info": {"success": float(result.success),
                                                "num_tool_calls": float(len(result.tool_calls))}},
        )
