"""Prefect artifacts of a run's progress, published after each evaluation (flows/recipe.py).

Two artifacts, each keyed by run so the Prefect UI's Artifacts page keeps one history per run:

* ``iterations-<run>`` (table): per iteration so far, held-out and rollout success and reward,
  tokens per episode, episode and model-call latency percentiles;
* ``progress-<run>`` (markdown): the success/reward chart (embedded PNG), the same numbers, and where
  the Parquet trajectories are.

The numbers come from the DuckDB views over the committed Parquet; the content is built by
``aworld_core.analysis.iterations`` (pure, unit-tested). Publishing never fails the recipe: an error is
logged as a warning and the run goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from aworld_core import recipe
from aworld_core.analysis import connect
from aworld_core.analysis.iterations import IterationArtifacts, artifact_key, iteration_artifacts, iteration_rows
from aworld_core.config import RecipeConfig
from aworld_core.errors import AWorldError


def build_iteration_artifacts(cfg: RecipeConfig, iteration: int, evals: list[Any]) -> IterationArtifacts:
    """Query the run's views and build the artifacts' content (no Prefect calls)."""
    location = recipe.location(cfg)
    con = connect(location, cfg.run_id)
    try:
        rows = iteration_rows(con, evals)
    finally:
        con.close()
    return iteration_artifacts(cfg.run_id, iteration, rows, location)


def publish_iteration_artifacts(cfg: RecipeConfig, iteration: int, evals: list[Any]) -> None:
    """Publish the table and markdown artifacts of ``cfg.run_id`` after iteration ``iteration``'s
    evaluation. Call inside a Prefect flow or task; ``evals``: the ``EvalSummary`` values so far."""
    try:
        log: logging.Logger | logging.LoggerAdapter = get_run_logger()
    except MissingContextError:
        log = logging.getLogger(__name__)
    try:
        content = build_iteration_artifacts(cfg, iteration, evals)
        create_table_artifact(key=artifact_key("iterations", cfg.run_id), table=content.table,
                              description=f"run {cfg.run_id}: success, reward, tokens and latency per "
                                          f"iteration (after iteration {iteration})")
        create_markdown_artifact(key=artifact_key("progress", cfg.run_id), markdown=content.markdown,
                                 description=f"run {cfg.run_id}: success and reward per iteration")
    except Exception as exc:  # artifacts are for people; a failure here must not stop training
        log.warning("could not publish progress artifacts of run %s after iteration %d: %s",
                    cfg.run_id, iteration, exc, exc_info=not isinstance(exc, AWorldError))
