"""RL math through verl's own registered functions (``verl.trainer.ppo.core_algos``).

We do not re-implement advantage estimators or policy losses: verl registers them by name
(``grpo``, ``vanilla``, ...) and our config strings pick them, so any estimator verl adds is usable.
This module only adapts our tensors (outcome rewards per episode, response masks with tool tokens
masked out) to verl's shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def outcome_token_rewards(rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Place each episode's scalar reward on its last model-sampled token: [B] -> [B, R]."""
    out = torch.zeros_like(response_mask, dtype=torch.float32)
    positions = torch.arange(response_mask.shape[1]).expand_as(response_mask)
    last = torch.where(response_mask > 0, positions, torch.full_like(positions, -1)).max(dim=1).values
    has = last >= 0
    out[has.nonzero().squeeze(-1), last[has]] = rewards[has]
    return out


def compute_advantages(estimator: str, rewards: torch.Tensor, response_mask: torch.Tensor,
                       groups: list[str]) -> torch.Tensor:
    """Advantages [B, R] from verl's registered estimator (``grpo``: group-normalised outcome)."""
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    fn = get_adv_estimator_fn(estimator)
    index = np.array(groups, dtype=object)
    adv, _returns = fn(token_level_rewards=outcome_token_rewards(rewards, response_mask),
                       response_mask=response_mask, index=index)
    return adv


def uniform_groups(rewards: torch.Tensor, groups: list[str]) -> torch.Tensor:
    """Bool [B]: the episode's group has identical rewards (GRPO advantage 0, nothing to learn)."""
    by_group: dict[str, list[float]] = {}
    for g, r in zip(groups, rewards.tolist()):
        by_group.setdefault(g, []).append(r)
    return torch.tensor([max(by_group[g]) == min(by_group[g]) for g in groups])


def actor_config(clip_ratio: float, loss_agg_mode: str, rollout_n: int,
                 clip_ratio_high: float | None = None) -> Any:
    """verl's ActorConfig for the policy loss. ``clip_ratio_high`` > ``clip_ratio`` is DAPO's
    "clip-higher": low-probability tokens with positive advantage may grow further per update."""
    from verl.workers.config import ActorConfig

    # verl's PPO-clip reads clip_ratio_low/high (default 0.2), not clip_ratio: set both explicitly.
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    return ActorConfig(strategy="fsdp", rollout_n=rollout_n, clip_ratio=clip_ratio, clip_ratio_low=clip_ratio,
                       clip_ratio_high=high, loss_agg_mode=loss_agg_mode, ppo_micro_batch_size_per_gpu=1)


def policy_loss(name: str, old_logprobs: torch.Tensor, logprobs: torch.Tensor, advantages: torch.Tensor,
                response_mask: torch.Tensor, loss_agg_mode: str, config: Any) -> tuple[torch.Tensor, dict]:
    """verl's registered policy loss (``vanilla`` = PPO-clip), aggregated by ``loss_agg_mode``."""
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    fn = get_policy_loss_fn(name)
    loss, metrics = fn(old_log_prob=old_logprobs, log_prob=logprobs, advantages=advantages,
                       response_mask=response_mask, loss_agg_mode=loss_agg_mode, config=config)
    return loss, metrics


def kl_loss(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, response_mask: torch.Tensor,
            loss_agg_mode: str, kind: str = "low_var_kl") -> torch.Tensor:
    from verl.trainer.ppo.core_algos import agg_loss, kl_penalty

    kl = kl_penalty(logprobs, ref_logprobs, kl_penalty=kind)
    return agg_loss(loss_mat=kl, loss_mask=response_mask, loss_agg_mode=loss_agg_mode)


def self_imitation_loss(logprobs: torch.Tensor, response_mask: torch.Tensor,
                        successes: torch.Tensor) -> torch.Tensor:
    """Token-mean negative log-likelihood of the model's own successful episodes (0 if there are none).

    Rejection-sampling fine-tuning mixed into the RL update: the successes of this iteration's practice
    are imitated directly, without PPO's clip on how far one update may move a token. Only model-sampled
    tokens count (tool observations are masked out like in the policy loss).
    """
    mask = response_mask * successes.unsqueeze(-1)
    return -(logprobs * mask).sum() / mask.sum().clamp(min=1.0)
