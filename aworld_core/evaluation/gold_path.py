"""Probability that the policy samples the gold transcript: a noise-free check that RL helped.

Held-out success measured by sampling is noisy (about +-1.4 points at 1024 episodes), so one RL
iteration's gain of 2-3 points cannot be asserted from a short run. The probability, at temperature 1,
of sampling exactly the environment's demonstration (tool call, then answer) is computed by one
forward pass per task, with no sampling at all, and it is a lower bound on that task's success
probability (other transcripts may succeed too). A paired comparison over held-out tasks before and
after an update is therefore a sharp, reproducible test of "the update made success more likely".
"""

from __future__ import annotations

from pathlib import Path

import torch

from aworld_core.agent.loop import ChatTokens, load_tokenizer
from aworld_core.envs.base import Environment
from aworld_core.training.batch import collate, response_logprobs
from aworld_core.training.sft import demonstration_sample


def gold_path_logprobs(model_dir: Path, env: Environment, tasks: list, batch_size: int = 64) -> torch.Tensor:
    """[len(tasks)]: log-probability of sampling each task's gold transcript (model turns only)."""
    from aworld_core.training.trainer import _load

    chat = ChatTokens(load_tokenizer(str(model_dir)))
    samples = [demonstration_sample(chat, env, t) for t in tasks]
    model = _load(Path(model_dir))
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            batch = collate(samples[start:start + batch_size], model.config.pad_token_id or 0)
            lp = response_logprobs(model, batch)
            out.append((lp * batch.response_mask).sum(dim=-1))
    return torch.cat(out)
