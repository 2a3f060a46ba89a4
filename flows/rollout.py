"""Rollout-only and evaluation-only flows: collect experience or score a checkpoint, no training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from aworld_core import recipe
from flows.common import config_from_params, dask_cluster, run_phase, served, stop_all_servers
from tasks.evaluate import summarize


def _checkpoint(cfg, checkpoint: str | None) -> Path:
    return Path(checkpoint).resolve() if checkpoint else recipe.ensure_base_model(cfg)


@flow(name="aworld-rollout", flow_run_name="rollout-{run_id}", log_prints=True)
def aworld_rollout(config_path: str | None = "configs/local.yaml", overrides: list[str] | None = None,
                   checkpoint: str | None = None, iteration: int = 0, run_id: str | None = None) -> dict[str, Any]:
    """Collect one iteration of training experience from ``checkpoint`` (default: the base model).

    ``timing`` (wall-clock epoch seconds) lets a caller split the flow's wall time into Prefect's
    start and finish around the body, and the body's dispatch before and after the shards.
    """
    body_start = time.time()
    cfg = config_from_params(config_path, overrides, run_id=run_id)
    ckpt = _checkpoint(cfg, checkpoint)
    store = recipe.run_store(cfg)
    try:
        with dask_cluster(cfg) as address, served(cfg, ckpt, iteration, Path(".aworld/logs")) as endpoints:
            shards = run_phase(recipe.shard_specs(cfg, iteration, recipe.ROLLOUT_PHASE, endpoints, ckpt), address)
    finally:
        stop_all_servers()
    out = {"run_id": cfg.run_id, "data": store.display(), "episodes": sum(s.episodes for s in shards),
           "successes": sum(s.successes for s in shards), "errors": sum(s.errors for s in shards)}
    get_run_logger().info("rollout done: %s", out)
    return {**out, "timing": {"body_start": body_start, "body_end": time.time()}}


@flow(name="aworld-evaluate", flow_run_name="evaluate-{run_id}", log_prints=True)
def aworld_evaluate(config_path: str | None = "configs/local.yaml", overrides: list[str] | None = None,
                    checkpoint: str | None = None, iteration: int = 0, run_id: str | None = None) -> dict[str, Any]:
    """Held-out success of ``checkpoint`` (default: the base model) on the configured environment."""
    cfg = config_from_params(config_path, overrides, run_id=run_id)
    ckpt = _checkpoint(cfg, checkpoint)
    try:
        with dask_cluster(cfg) as address, served(cfg, ckpt, iteration, Path(".aworld/logs")) as endpoints:
            shards = run_phase(recipe.shard_specs(cfg, iteration, recipe.EVAL_PHASE, endpoints, ckpt), address)
            summary = summarize(cfg, iteration, shards)
    finally:
        stop_all_servers()
    return {"run_id": cfg.run_id, "data": recipe.run_store(cfg).display(), **summary.__dict__}
