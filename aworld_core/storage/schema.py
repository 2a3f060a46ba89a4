"""The trajectory schema (versioned): episodes, turns, tool_calls, evaluations.

Every row carries ``schema_version``. Evolution rule: a minor change only adds nullable columns
(readers of older data see nulls); anything else (renaming, retyping, removing) bumps the major
version and ships a reader shim. See docs/schema.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from aworld_core.agent.loop import EpisodeResult

SCHEMA_VERSION = "1.0"

_KEYS = [
    pa.field("schema_version", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("iteration", pa.int32()),
    pa.field("phase", pa.string()),
    pa.field("shard", pa.int32()),
    pa.field("episode_id", pa.string()),
]

EPISODES = pa.schema(_KEYS + [
    pa.field("task_id", pa.string()),
    pa.field("sample_index", pa.int32()),
    pa.field("environment", pa.string()),
    pa.field("split", pa.string()),
    pa.field("policy_checkpoint", pa.string()),
    pa.field("question", pa.string()),
    pa.field("messages", pa.string()),  # JSON list of OpenAI-style messages
    pa.field("prompt_ids", pa.list_(pa.int32())),
    pa.field("token_ids", pa.list_(pa.int32())),  # prompt + every turn, exactly as sampled
    pa.field("loss_mask", pa.list_(pa.int8())),  # 1 = sampled by the model, 0 = prompt/tool/env
    pa.field("logprobs", pa.list_(pa.float32())),  # sampling logprob per token, 0 where mask is 0
    pa.field("answer", pa.string()),
    pa.field("reward", pa.float32()),
    pa.field("success", pa.bool_()),
    pa.field("stop_reason", pa.string()),
    pa.field("error", pa.string()),
    pa.field("num_turns", pa.int32()),
    pa.field("num_tool_calls", pa.int32()),
    pa.field("num_tool_errors", pa.int32()),
    pa.field("prompt_tokens", pa.int32()),
    pa.field("response_tokens", pa.int32()),
    pa.field("total_tokens", pa.int32()),
    pa.field("model_s", pa.float32()),
    pa.field("tool_s", pa.float32()),
    pa.field("total_s", pa.float32()),
    pa.field("created_at", pa.float64()),
])

TURNS = pa.schema(_KEYS + [
    pa.field("turn_index", pa.int32()),
    pa.field("context_tokens", pa.int32()),
    pa.field("response_ids", pa.list_(pa.int32())),
    pa.field("response_logprobs", pa.list_(pa.float32())),
    pa.field("response_text", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("observation_ids", pa.list_(pa.int32())),
    pa.field("model_latency_s", pa.float32()),
])

TOOL_CALLS = pa.schema(_KEYS + [
    pa.field("turn_index", pa.int32()),
    pa.field("call_index", pa.int32()),
    pa.field("name", pa.string()),
    pa.field("arguments", pa.string()),  # JSON string
    pa.field("result", pa.string()),
    pa.field("latency_s", pa.float32()),
    pa.field("error", pa.string()),
])

EVALUATIONS = pa.schema([
    pa.field("schema_version", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("iteration", pa.int32()),
    pa.field("policy_checkpoint", pa.string()),
    pa.field("environment", pa.string()),
    pa.field("split", pa.string()),
    pa.field("episodes", pa.int32()),
    pa.field("successes", pa.int32()),
    pa.field("success_rate", pa.float64()),
    pa.field("mean_reward", pa.float64()),
    pa.field("temperature", pa.float32()),
    pa.field("created_at", pa.float64()),
])

TABLES: dict[str, pa.Schema] = {"episodes": EPISODES, "turns": TURNS, "tool_calls": TOOL_CALLS,
                                "evaluations": EVALUATIONS}

# Reader shims for data written under an older *major* schema version: (table, major) -> a function
# turning such a table into the current schema (rename, retype, derive). Minor versions need none: a
# column added in a minor version reads as null from older files. Empty while only 1.x exists.
READER_SHIMS: dict[tuple[str, int], Callable[[pa.Table], pa.Table]] = {}


def schema_major(version: str) -> int:
    """``"1.3"`` -> 1."""
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError as exc:
        raise ValueError(f"malformed schema_version {version!r}; expected MAJOR.MINOR") from exc


@dataclass(frozen=True)
class EpisodeContext:
    """Where an episode belongs: the same for every episode of a shard."""

    run_id: str
    iteration: int
    phase: str
    shard: int
    environment: str
    policy_checkpoint: str


def episode_id(iteration: int, task_id: str, sample_index: int) -> str:
    """Deterministic: the same (iteration, task, sample) is the same episode on every retry."""
    return f"i{iteration}-{task_id}-s{sample_index}"


def episode_tables(results: list[tuple[int, "EpisodeResult"]], ctx: EpisodeContext) -> dict[str, pa.Table]:
    """Rows for all three per-episode tables from ``(sample_index, result)`` pairs."""
    now = time.time()
    ep_rows: list[dict[str, Any]] = []
    turn_rows: list[dict[str, Any]] = []
    call_rows: list[dict[str, Any]] = []
    for sample_index, r in results:
        eid = episode_id(ctx.iteration, r.task.task_id, sample_index)
        keys = {"schema_version": SCHEMA_VERSION, "run_id": ctx.run_id, "iteration": ctx.iteration,
                "phase": ctx.phase, "shard": ctx.shard, "episode_id": eid}
        ep_rows.append({
            **keys, "task_id": r.task.task_id, "sample_index": sample_index,
            "environment": ctx.environment, "split": r.task.split,
            "policy_checkpoint": ctx.policy_checkpoint, "question": r.task.question,
            "messages": json.dumps(r.messages, ensure_ascii=False),
            "prompt_ids": r.prompt_ids, "token_ids": r.token_ids, "loss_mask": r.loss_mask,
            "logprobs": r.logprobs, "answer": r.answer, "reward": r.reward, "success": r.success,
            "stop_reason": r.stop_reason, "error": r.error, "num_turns": len(r.turns),
            "num_tool_calls": len(r.tool_calls),
            "num_tool_errors": sum(1 for c in r.tool_calls if c.error is not None),
            "prompt_tokens": len(r.prompt_ids), "response_tokens": r.response_tokens,
            "total_tokens": len(r.token_ids), "model_s": r.model_s, "tool_s": r.tool_s,
            "total_s": r.total_s, "created_at": now,
        })
        for t in r.turns:
            turn_rows.append({**keys, "turn_index": t.turn_index, "context_tokens": t.context_tokens,
                              "response_ids": t.response_ids, "response_logprobs": t.response_logprobs,
                              "response_text": t.response_text, "finish_reason": t.finish_reason,
                              "observation_ids": t.observation_ids, "model_latency_s": t.model_latency_s})
        for c in r.tool_calls:
            call_rows.append({**keys, "turn_index": c.turn_index, "call_index": c.call_index,
                              "name": c.name, "arguments": c.arguments, "result": c.result,
                              "latency_s": c.latency_s, "error": c.error})
    return {"episodes": pa.Table.from_pylist(ep_rows, schema=EPISODES),
            "turns": pa.Table.from_pylist(turn_rows, schema=TURNS),
            "tool_calls": pa.Table.from_pylist(call_rows, schema=TOOL_CALLS)}
