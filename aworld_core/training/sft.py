"""Supervised warm start on demonstrations (or on an iteration's successful trajectories).

A randomly initialised model never produces a valid tool call, so RL would have no signal. A short
SFT on gold transcripts gives a format-correct but unreliable policy (FIELD_NOTES: ~35% sampled
success), and RL does the rest. Demonstrations are built token by token exactly like rollouts
(prompt, assistant turns with mask 1, tool observations with mask 0), so the warm start trains on the
same token layout the agent loop produces.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aworld_core.agent.loop import ChatTokens, load_tokenizer
from aworld_core.config import WarmStartConfig
from aworld_core.envs.base import Environment
from aworld_core.training.batch import Sample, collate, response_logprobs
from aworld_core.training.trainer import _load, _save

log = logging.getLogger(__name__)


def assistant_ids(chat: ChatTokens, message: dict[str, Any]) -> list[int]:
    """Ids of one assistant message as the template renders it, ending with the end-of-turn token."""
    base = [{"role": "user", "content": "u"}]
    before = chat.tok.apply_chat_template(base, tokenize=False, add_generation_prompt=True)
    after = chat.tok.apply_chat_template(base + [message], tokenize=False)
    text = after[len(before):]
    text = text[: text.rindex(chat.eos_text) + len(chat.eos_text)]
    return list(chat.tok.encode(text, add_special_tokens=False))


def demonstration_sample(chat: ChatTokens, env: Environment, task) -> Sample:
    tools = [t.schema() for t in env.tools()]
    msgs = [{"role": "system", "content": env.system_prompt()}, {"role": "user", "content": task.question}]
    ids = chat.prompt_ids(msgs, tools)
    prompt_len = len(ids)
    mask = [0] * prompt_len
    pending_tools: list[dict[str, Any]] = []
    for m in env.demonstration(task):
        if m["role"] == "tool":
            pending_tools.append(m)
            continue
        if pending_tools:
            obs = chat.observation_ids(pending_tools)
            ids, mask, pending_tools = ids + obs, mask + [0] * len(obs), []
        a = assistant_ids(chat, m)
        ids, mask = ids + a, mask + [1] * len(a)
    return Sample(task.task_id, task.task_id, ids, prompt_len, mask, [0.0] * len(ids), 1.0)


@dataclass
class SFTReport:
    checkpoint: str
    steps: int
    first_loss: float
    last_loss: float
    wall_s: float


def sft_warm_start(ckpt_in: Path, ckpt_out: Path, env: Environment, cfg: WarmStartConfig,
                   seed: int = 0, task_offset: int = 1_000_000) -> SFTReport:
    """Train on ``cfg.demonstrations`` gold transcripts for ``cfg.steps`` steps; save to ``ckpt_out``.

    Demonstrations come from a far offset of the train split so they do not overlap the tasks RL
    iterations draw (and never the held-out split).
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    chat = ChatTokens(load_tokenizer(str(ckpt_in)))
    samples = [demonstration_sample(chat, env, t) for t in env.tasks("train", cfg.demonstrations, task_offset)]
    model = _load(ckpt_in)
    batch = collate(samples, model.config.pad_token_id or 0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    first = last = float("nan")
    for step in range(cfg.steps):
        idx = torch.randint(0, len(batch), (cfg.batch_size,), generator=gen)
        mb = batch.select(idx)
        lp = response_logprobs(model, mb)
        loss = -(lp * mb.response_mask).sum() / mb.response_mask.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        last = float(loss.detach())
        if step == 0:
            first = last
        if step % 25 == 0:
            log.info("warm start step %d/%d loss %.3f", step, cfg.steps, last)
    _save(model, ckpt_in, ckpt_out)
    return SFTReport(str(ckpt_out), cfg.steps, first, last, time.perf_counter() - t0)
