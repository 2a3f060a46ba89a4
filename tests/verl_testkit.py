"""Test helper for the verl integration: an ``episodes`` table built from environment demonstrations.

Every episode is token-faithful, laid out exactly like a rollout (prompt, assistant turns with mask 1,
tool observations with mask 0), and its ``messages`` look like the agent loop stores them (assistant
content is the decoded sampled text, tool calls included). Within each task (GRPO group) even samples
are correct (reward 1) and odd samples answer wrongly (reward 0), so every group carries signal.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import pyarrow as pa
import torch

from aworld_core.agent.loop import ChatTokens, load_tokenizer
from aworld_core.envs.base import Environment
from aworld_core.storage.schema import EPISODES, SCHEMA_VERSION
from aworld_core.training.sft import assistant_ids, demonstration_sample


def _messages(chat: ChatTokens, env: Environment, task) -> list[dict]:
    out = [{"role": "system", "content": env.system_prompt()}, {"role": "user", "content": task.question}]
    for m in env.demonstration(task):
        if m["role"] == "assistant":
            m = {**m, "content": chat.decode(assistant_ids(chat, m))}
        out.append(m)
    return out


def demo_episodes(model_dir: Path, env: Environment, *, run_id: str = "synth", iteration: int = 0,
                  tasks: int = 4, samples: int = 4, seed: int = 0) -> pa.Table:
    """``tasks`` train tasks drawn like the recipe's rollout phase (offset ``iteration * tasks``)."""
    chat = ChatTokens(load_tokenizer(str(model_dir)))
    rng = random.Random(seed)
    rows = []
    for task in env.tasks("train", tasks, offset=iteration * tasks):
        wrong = dataclasses.replace(task, answer=str(int(task.answer) + 1))
        for k in range(samples):
            good = k % 2 == 0
            played = task if good else wrong
            s = demonstration_sample(chat, env, played)
            lps = [(-rng.random() * 2 if m else 0.0) for m in s.loss_mask]
            rows.append({
                "schema_version": SCHEMA_VERSION, "run_id": run_id, "iteration": iteration, "phase": "rollout",
                "shard": 0, "episode_id": f"i{iteration}-{task.task_id}-s{k}", "task_id": task.task_id,
                "sample_index": k, "environment": env.name, "split": task.split,
                "policy_checkpoint": str(model_dir), "question": task.question,
                "messages": json.dumps(_messages(chat, env, played)), "prompt_ids": s.token_ids[:s.prompt_len],
                "token_ids": s.token_ids, "loss_mask": s.loss_mask, "logprobs": lps,
                "answer": played.answer, "reward": 1.0 if good else 0.0, "success": good,
                "stop_reason": "answer", "error": None, "num_turns": 2, "num_tool_calls": 1,
                "num_tool_errors": 0, "prompt_tokens": s.prompt_len, "response_tokens": sum(s.loss_mask),
                "total_tokens": len(s.token_ids), "model_s": 0.1, "tool_s": 0.01, "total_s": 0.12,
                "created_at": time.time()})
    return pa.Table.from_pylist(rows, schema=EPISODES)


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a HuggingFace checkpoint directory (all of its safetensors shards)."""
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(f))
    return out
