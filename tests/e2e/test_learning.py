"""One real RL iteration measurably improves the policy on held-out tasks.

Real rollouts (vLLM CPU server on the warm-started tiny model, 1024 episodes: one benchmark iteration), one update with the
default trainer backend (verl's GRPO advantages and PPO-clip loss, seeded), then a noise-free measure
on 512 held-out tasks: the probability of sampling the gold transcript at temperature 1, a lower bound
on each task's success probability (aworld_core/evaluation/gold_path.py). The improvement must be
significant in a paired test, not merely positive. (Sampled success needs ~6 iterations and 1024
episodes per evaluation to show the same: benchmarks/learning.py.)
"""

from __future__ import annotations

import pytest
import torch

from aworld_core.agent.loop import LoopLimits
from aworld_core.config import TrainConfig
from aworld_core.envs.base import build_env
from aworld_core.evaluation.gold_path import gold_path_logprobs
from aworld_core.rollout.shard import ShardSpec, run_shard
from aworld_core.storage.store import RunStore
from aworld_core.storage.uri import StorageLocation
from aworld_core.training.trainer import get_trainer

pytestmark = pytest.mark.slow


def test_one_rl_iteration_significantly_raises_heldout_success_probability(vllm_server, warm_model_dir, tmp_path):
    loc = StorageLocation(str(tmp_path / "runs"))
    params = {"reward": "digits"}
    spec = ShardSpec(run_id="learn", iteration=0, phase="rollout", shard=0, num_shards=1, env_name="arithmetic",
                     env_params=params, env_seed=1234, split="train", num_tasks=128, samples_per_task=8,
                     endpoints=(vllm_server.url,), served_name="policy", tokenizer_dir=str(warm_model_dir),
                     checkpoint_id="warm", limits=LoopLimits(), concurrency=64, storage=loc)
    summary = run_shard(spec)
    assert summary.episodes == 1024 and summary.errors == 0
    episodes = RunStore(loc, "learn").read("episodes")
    cfg = TrainConfig(lr=1e-4, clip_ratio_high=0.28, seed=0)
    report = get_trainer("torch")(warm_model_dir, tmp_path / "iter-1", episodes, cfg, 8)
    assert report.trained_samples > 0 and report.steps > 0

    env = build_env("arithmetic", seed=1234, **params)
    heldout = env.tasks("heldout", 512)
    before = gold_path_logprobs(warm_model_dir, env, heldout).exp()
    after = gold_path_logprobs(tmp_path / "iter-1", env, heldout).exp()
    diff = after - before
    t = float(diff.mean() / (diff.std() / len(diff) ** 0.5))
    print(f"held-out gold-path success probability {before.mean():.3f} -> {after.mean():.3f}, paired t = {t:.1f}")
    assert float(diff.mean()) > 0.01
    assert t > 2.6, "improvement significant at p < 0.01 (one-sided, paired over 512 held-out tasks)"
    assert torch.isfinite(after).all()
