"""Synthetic but realistically sized trajectory tables, built as Arrow arrays (no Python rows).

For benchmarks and tests: :func:`synthetic_shard` returns the ``episodes``, ``turns`` and
``tool_calls`` tables of one shard, consistent with each other (every turn and tool call belongs to an
episode of the shard; episode token counts, latencies and tool errors are the sums of its turns).
Sizes: 1-7 turns per episode, response_ids 20-60 tokens, observation_ids 8-24 (none after the last
turn), response_text 35-65 characters, one tool call per turn except the last, 10% of calls failing.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from aworld_core.storage.schema import EPISODES, SCHEMA_VERSION, TOOL_CALLS, TURNS


VOCAB = 32_000
_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz      0123456789<>/{}\":,.=+-*", dtype=np.uint8)
TOOLS = ["calculator", "search", "python", "read_file", ""]
STOP_REASONS = ["answer", "no_action", "max_turns", "max_new_tokens", "max_total_tokens", "error"]


# -- synthetic data, built as Arrow arrays ---------------------------------------------------------
def _lists(rng: np.random.Generator, lengths: np.ndarray, kind: str) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    n = int(offsets[-1])
    if kind == "ids":
        values = pa.array(rng.integers(0, VOCAB, n, dtype=np.int32))
    elif kind == "logprobs":
        values = pa.array((-rng.standard_exponential(n, dtype=np.float32) * 0.7).astype(np.float32))
    else:
        raise ValueError(kind)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _text(rng: np.random.Generator, lengths: np.ndarray) -> pa.StringArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    chars = _ALPHABET[rng.integers(0, len(_ALPHABET), int(offsets[-1]))]
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets.tobytes()), pa.py_buffer(chars.tobytes()))


def _pick(rng: np.random.Generator, values: list[str], n: int, p: list[float] | None = None) -> pa.Array:
    return pa.array(values).take(pa.array(rng.choice(len(values), n, p=p)))


def _const(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    return pa.array([value], type_).take(pa.array(np.zeros(n, dtype=np.int32)))


def synthetic_shard(run_id: str, key: Any, turns: int, seed: int = 0) -> dict[str, pa.Table]:
    """Episodes, turns and tool_calls for one shard with exactly ``turns`` turns (1-7 per episode).

    ``key`` is a :class:`~aworld_core.storage.store.ShardKey` (iteration, phase, shard go into every row).
    Deterministic for a given ``seed``.
    """
    if turns < 1:
        raise ValueError(f"turns must be >= 1, got {turns}")
    rng = np.random.default_rng(seed)
    per_ep = rng.integers(1, 8, turns)  # more than enough episodes; trim to exactly `turns` turns
    cum = np.cumsum(per_ep)
    n_ep = int(np.searchsorted(cum, turns) + 1)
    per_ep = per_ep[:n_ep].copy()
    per_ep[-1] -= int(cum[n_ep - 1] - turns)
    turn_ep = np.repeat(np.arange(n_ep), per_ep)  # episode index of every turn
    starts = np.concatenate([[0], np.cumsum(per_ep)[:-1]])
    turn_idx = (np.arange(turns) - starts[turn_ep]).astype(np.int32)
    is_last = turn_idx == (per_ep[turn_ep] - 1)

    ep_ids = pa.array([f"i{key.iteration}-{key.phase}-{key.shard}-{e // 8}-s{e % 8}" for e in range(n_ep)])
    task_ids = pa.array([f"{key.phase}-{key.shard}-{e // 8}" for e in range(n_ep)])

    def keys(n: int, ep_index: np.ndarray | None) -> dict[str, pa.Array]:
        return {"schema_version": _const(SCHEMA_VERSION, n, pa.string()), "run_id": _const(run_id, n, pa.string()),
                "iteration": _const(key.iteration, n, pa.int32()), "phase": _const(key.phase, n, pa.string()),
                "shard": _const(key.shard, n, pa.int32()),
                "episode_id": ep_ids if ep_index is None else ep_ids.take(pa.array(ep_index))}

    # turns
    resp_len = rng.integers(20, 61, turns).astype(np.int32)
    obs_len = np.where(is_last, 0, rng.integers(8, 25, turns)).astype(np.int32)
    prompt_len = rng.integers(30, 51, n_ep).astype(np.int32)
    latency = rng.lognormal(-0.5, 0.6, turns).astype(np.float32)
    before = np.cumsum(resp_len + obs_len) - (resp_len + obs_len)  # tokens of earlier turns, run-wide
    ctx = prompt_len[turn_ep] + before - before[starts[turn_ep]]
    turns_t = pa.table({
        **keys(turns, turn_ep), "turn_index": pa.array(turn_idx), "context_tokens": pa.array(ctx.astype(np.int32)),
        "response_ids": _lists(rng, resp_len, "ids"), "response_logprobs": _lists(rng, resp_len, "logprobs"),
        "response_text": _text(rng, rng.integers(35, 66, turns)),
        "finish_reason": _pick(rng, ["stop", "length"], turns, [0.97, 0.03]),
        "observation_ids": _lists(rng, obs_len, "ids"), "model_latency_s": pa.array(latency)}, schema=TURNS)

    # tool calls: one per turn except an episode's last
    call_turn = np.nonzero(~is_last)[0]
    n_calls = len(call_turn)
    failed = rng.random(n_calls) < 0.1
    tool_lat = rng.lognormal(-4, 1, n_calls).astype(np.float32)
    errors = pa.array(np.where(failed, "ToolError: bad arguments", None).tolist(), pa.string()) if n_calls else \
        pa.array([], pa.string())
    calls_t = pa.table({
        **keys(n_calls, turn_ep[call_turn]), "turn_index": pa.array(turn_idx[call_turn]),
        "call_index": _const(0, n_calls, pa.int32()), "name": _pick(rng, TOOLS, n_calls, [0.6, 0.2, 0.1, 0.07, 0.03]),
        "arguments": _text(rng, rng.integers(20, 41, n_calls)), "result": _text(rng, rng.integers(5, 31, n_calls)),
        "latency_s": pa.array(tool_lat), "error": errors}, schema=TOOL_CALLS)

    # episodes: full token stream = prompt + every response and observation
    resp_tok = np.bincount(turn_ep, weights=resp_len, minlength=n_ep).astype(np.int32)
    obs_tok = np.bincount(turn_ep, weights=obs_len, minlength=n_ep).astype(np.int32)
    total_tok = prompt_len + resp_tok + obs_tok
    model_s = np.bincount(turn_ep, weights=latency, minlength=n_ep).astype(np.float32)
    tool_s = np.bincount(turn_ep[call_turn], weights=tool_lat, minlength=n_ep).astype(np.float32)
    n_tool_err = np.bincount(turn_ep[call_turn], weights=failed, minlength=n_ep).astype(np.int32)
    success = rng.random(n_ep) < 0.4
    mask_offsets = np.zeros(n_ep + 1, dtype=np.int32)
    np.cumsum(total_tok, out=mask_offsets[1:])
    mask_vals = (rng.random(int(mask_offsets[-1])) < 0.5).astype(np.int8)
    episodes_t = pa.table({
        **keys(n_ep, None), "task_id": task_ids, "sample_index": pa.array((np.arange(n_ep) % 8).astype(np.int32)),
        "environment": _const("arithmetic", n_ep, pa.string()), "split": _const("train", n_ep, pa.string()),
        "policy_checkpoint": _const(f"{run_id}/iter-{key.iteration}", n_ep, pa.string()),
        "question": _text(rng, rng.integers(40, 81, n_ep)),
        "messages": _text(rng, (120 + per_ep * 110).astype(np.int32)),
        "prompt_ids": _lists(rng, prompt_len, "ids"), "token_ids": _lists(rng, total_tok, "ids"),
        "loss_mask": pa.ListArray.from_arrays(pa.array(mask_offsets), pa.array(mask_vals)),
        "logprobs": _lists(rng, total_tok, "logprobs"), "answer": _text(rng, rng.integers(1, 6, n_ep)),
        "reward": pa.array(success.astype(np.float32)), "success": pa.array(success),
        "stop_reason": _pick(rng, STOP_REASONS, n_ep, [0.8, 0.05, 0.08, 0.03, 0.02, 0.02]),
        "error": pa.nulls(n_ep, pa.string()), "num_turns": pa.array(per_ep.astype(np.int32)),
        "num_tool_calls": pa.array((per_ep - 1).astype(np.int32)), "num_tool_errors": pa.array(n_tool_err),
        "prompt_tokens": pa.array(prompt_len), "response_tokens": pa.array(resp_tok),
        "total_tokens": pa.array(total_tok), "model_s": pa.array(model_s), "tool_s": pa.array(tool_s),
        "total_s": pa.array((model_s + tool_s + 0.001).astype(np.float32)),
        "created_at": _const(time.time(), n_ep, pa.float64())}, schema=EPISODES)
    return {"episodes": episodes_t, "turns": turns_t, "tool_calls": calls_t}
