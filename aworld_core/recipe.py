"""The recipe's stages as plain functions over a config: what ``tasks/`` wraps and ``flows/`` chains.

Kept free of Prefect so every stage is testable and callable from a notebook. Each stage is
resumable: it looks at what the run store already holds and does only what is missing.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from aworld_core.agent.loop import LoopLimits
from aworld_core.config import RecipeConfig
from aworld_core.envs.base import build_env
from aworld_core.model.tiny import check_model_dir, create_tiny_model
from aworld_core.rollout.shard import ShardSpec, ShardSummary
from aworld_core.storage.schema import EVALUATIONS, SCHEMA_VERSION
from aworld_core.storage.store import RunStore, ShardKey
from aworld_core.storage.uri import StorageLocation
from aworld_core.training.sft import sft_warm_start
from aworld_core.training.trainer import get_trainer

log = logging.getLogger(__name__)
EVAL_PHASE, ROLLOUT_PHASE = "eval", "rollout"
SUMMARY_PHASE = "summary"  # its own commit key: must not collide with eval shard 0's manifest


def location(cfg: RecipeConfig) -> StorageLocation:
    return StorageLocation(cfg.storage.uri, cfg.storage.s3_endpoint_url, cfg.storage.s3_region)


def run_store(cfg: RecipeConfig) -> RunStore:
    assert cfg.run_id, "call cfg.with_run_id() first"
    return RunStore(location(cfg), cfg.run_id)


def checkpoint_dir(cfg: RecipeConfig, iteration: int) -> Path:
    """Local directory of iteration ``iteration``'s policy (what vLLM serves).

    With local storage it sits inside the run directory; with S3 it is a local working copy under
    ``.aworld/checkpoints/<run_id>`` (vLLM serves from disk).
    """
    loc = location(cfg)
    base = Path(loc.base) / cfg.run_id / "checkpoints" if not loc.is_s3 else \
        Path(".aworld/checkpoints").resolve() / cfg.run_id
    return base / f"iter-{iteration}"


def checkpoint_id(cfg: RecipeConfig, iteration: int) -> str:
    return f"{cfg.run_id}/iter-{iteration}"


def ensure_base_model(cfg: RecipeConfig) -> Path:
    """The configured base model; the tiny default is created on first use."""
    path = cfg.resolve(cfg.model.path)
    if not (path / "config.json").exists() and cfg.model.create_if_missing:
        env = build_env(cfg.env.name, seed=cfg.env.seed, **cfg.env.params)
        create_tiny_model(path, env, cfg.model.tiny)
    return check_model_dir(path)


def prepare_initial_checkpoint(cfg: RecipeConfig) -> dict[str, Any]:
    """Iteration 0's policy: the base model, after the SFT warm start when enabled. Idempotent."""
    out = checkpoint_dir(cfg, 0)
    if (out / "config.json").exists():
        return {"checkpoint": str(out), "skipped": True}
    base = ensure_base_model(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    ws = cfg.train.warm_start
    if ws.enabled and ws.steps > 0:
        env = build_env(cfg.env.name, seed=cfg.env.seed, **cfg.env.params)
        report = sft_warm_start(base, out, env, ws, seed=cfg.seed)
        return {"checkpoint": str(out), "warm_start": asdict(report), "skipped": False}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp)
    tmp.rename(out)
    return {"checkpoint": str(out), "skipped": False}


def shard_specs(cfg: RecipeConfig, iteration: int, phase: str, endpoints: list[str],
                tokenizer_dir: Path) -> list[ShardSpec]:
    """The shards of one phase: ``rollout`` draws train tasks, ``eval`` the held-out split."""
    a = cfg.agent
    if phase == ROLLOUT_PHASE:
        n_tasks, samples, temp = cfg.rollout.prompts_per_iteration, cfg.rollout.samples_per_prompt, a.temperature
        split, offset = "train", iteration * cfg.rollout.prompts_per_iteration
    else:
        n_tasks, samples, temp = cfg.eval.episodes, cfg.eval.samples_per_task, cfg.eval.temperature
        split, offset = "heldout", 0
    shards = max(1, min(cfg.rollout.shards, n_tasks * samples))
    limits = LoopLimits(max_turns=a.max_turns, max_new_tokens=a.max_new_tokens,
                        max_total_tokens=a.max_total_tokens, temperature=temp, top_p=a.top_p,
                        tool_timeout_s=a.tool_timeout_s, seeded_sampling=a.seeded_sampling)
    return [ShardSpec(run_id=cfg.run_id, iteration=iteration, phase=phase, shard=k, num_shards=shards,
                      env_name=cfg.env.name, env_params=dict(cfg.env.params), env_seed=cfg.env.seed,
                      split=split, num_tasks=n_tasks, samples_per_task=samples, task_offset=offset,
                      endpoints=tuple(endpoints), served_name=cfg.model.served_name,
                      tokenizer_dir=str(tokenizer_dir), checkpoint_id=checkpoint_id(cfg, iteration),
                      limits=limits, concurrency=cfg.rollout.concurrency, storage=location(cfg),
                      seed=cfg.seed, api_key_env=cfg.serve.api_key_env,
                      max_in_flight_per_endpoint=cfg.serve.max_in_flight_per_endpoint,
                      request_timeout_s=cfg.serve.request_timeout_s)
            for k in range(shards)]


@dataclass
class EvalSummary:
    iteration: int
    checkpoint: str
    episodes: int
    successes: int
    success_rate: float
    mean_reward: float


def summarize_evaluation(cfg: RecipeConfig, iteration: int, shards: list[ShardSummary]) -> EvalSummary:
    """Aggregate an eval phase and commit it to the ``evaluations`` table (idempotent)."""
    n = sum(s.episodes for s in shards)
    succ = sum(s.successes for s in shards)
    reward = sum(s.reward_sum for s in shards)
    summary = EvalSummary(iteration, checkpoint_id(cfg, iteration), n, succ, succ / n if n else 0.0,
                          reward / n if n else 0.0)
    row = {"schema_version": SCHEMA_VERSION, "run_id": cfg.run_id, "iteration": iteration,
           "policy_checkpoint": summary.checkpoint, "environment": cfg.env.name, "split": "heldout",
           "episodes": n, "successes": succ, "success_rate": summary.success_rate,
           "mean_reward": summary.mean_reward, "temperature": cfg.eval.temperature,
           "created_at": time.time()}
    run_store(cfg).commit_shard(ShardKey(iteration, SUMMARY_PHASE, 0),
                                {"evaluations": pa.Table.from_pylist([row], schema=EVALUATIONS)})
    return summary


def train_iteration(cfg: RecipeConfig, iteration: int) -> dict[str, Any]:
    """Train on iteration ``iteration``'s committed rollouts; write checkpoint ``iteration + 1``."""
    out = checkpoint_dir(cfg, iteration + 1)
    if (out / "config.json").exists():
        return {"checkpoint": str(out), "skipped": True}
    episodes = run_store(cfg).read("episodes", iteration=iteration, phase=ROLLOUT_PHASE)
    trainer = get_trainer(cfg.train.backend)
    report = trainer(checkpoint_dir(cfg, iteration), out, episodes, cfg.train, cfg.rollout.samples_per_prompt)
    return {**report.to_dict(), "skipped": False}
