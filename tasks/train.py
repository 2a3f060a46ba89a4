"""Prefect tasks for the model stages: base model + warm start, and one RL update."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from aworld_core import recipe
from aworld_core.config import RecipeConfig


@task(name="prepare-model", task_run_name="prepare-model-{cfg.run_id}")
def prepare_model(cfg: RecipeConfig) -> dict[str, Any]:
    out = recipe.prepare_initial_checkpoint(cfg)
    get_run_logger().info("iteration 0 checkpoint: %s", out)
    return out


@task(name="train", task_run_name="train-iter-{iteration}", retries=1)
def train(cfg: RecipeConfig, iteration: int) -> dict[str, Any]:
    out = recipe.train_iteration(cfg, iteration)
    get_run_logger().info("trained iteration %d: %s", iteration,
                          {k: v for k, v in out.items() if k != "metrics"})
    return out
