"""Prefect task: aggregate a held-out evaluation, store it, and show it in the Prefect UI."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from aworld_core import recipe
from aworld_core.config import RecipeConfig
from aworld_core.rollout.shard import ShardSummary


@task(name="evaluate", task_run_name="evaluate-iter-{iteration}")
def summarize(cfg: RecipeConfig, iteration: int, shards: list[ShardSummary]) -> recipe.EvalSummary:
    s = recipe.summarize_evaluation(cfg, iteration, shards)
    where = recipe.run_store(cfg).display()
    create_markdown_artifact(
        key=f"eval-{cfg.run_id}-iter-{iteration}".lower().replace("_", "-").replace(".", "-"),
        markdown=(f"### Held-out evaluation, iteration {iteration}\n\n"
                  f"| checkpoint | episodes | success | mean reward |\n|---|---|---|---|\n"
                  f"| `{s.checkpoint}` | {s.episodes} | {s.success_rate:.1%} | {s.mean_reward:.3f} |\n\n"
                  f"Trajectories: `{where}`"),
        description=f"held-out success of {s.checkpoint}")
    return s
